"""The read side's writers: faust agents projecting events into Redis views, exactly-once in effect."""

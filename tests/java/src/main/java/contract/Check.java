package contract;

import java.util.Objects;

/** One human line per passed check; the first failed one ends the run. */
final class Check {
    private Check() {}

    static int passed;

    static final class Violation extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Violation(String message) {
            super(message);
        }
    }

    static void that(boolean condition, String what) {
        if (!condition) {
            throw new Violation(what);
        }
        passed++;
        System.out.println("ok   " + what);
    }

    static void equal(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new Violation(what + ": expected " + show(expected) + ", got " + show(actual));
        }
        passed++;
        System.out.println("ok   " + what + " (" + show(actual) + ")");
    }

    static Violation fail(String what) {
        return new Violation(what);
    }

    private static String show(Object value) {
        return value instanceof CharSequence ? "\"" + value + "\"" : String.valueOf(value);
    }
}

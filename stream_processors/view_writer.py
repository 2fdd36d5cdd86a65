"""The Redis adapter of a ViewStore: applies a batch of projected events to one generation of a
view atomically with the per-partition checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
import redis.asyncio as redis
from redis.exceptions import WatchError

from stream_processors import layout
from stream_processors.generations import behind, int_map
from stream_processors.ops import HashIncrement, HashSet, MoneyMoved, Op, SetAdd, SortedSetAdd
from stream_processors.store import GenerationState, ProjectedEvent, lost

# Money movements, applied in order atomically inside the batch's MULTI: for each, balance,
# version, the transaction entry with the balance after it, and the daily totals in the account's
# currency. ARGV[1] is a JSON array of [account key, transactions key, delta, version, entry
# without its closing brace, daily prefix, updated_at, "1" when counted daily], numbers as text.
# One call carries a run of them: one command per event (and its QUEUED reply, each read under its
# own timeout) was a third of a projector's Redis client CPU (py-spy). Balances stay below 2^53 (a
# domain rule), so Lua's numbers hold them exactly.
MONEY_MOVED = """
local moves = cjson.decode(ARGV[1])
for _, m in ipairs(moves) do
  local balance = redis.call('HINCRBY', m[1], 'balance', m[3])
  redis.call('HSET', m[1], 'version', m[4], 'updated_at', m[7])
  redis.call('ZADD', m[2], m[4], m[5] .. ',"balance_after":' .. string.format('%d', balance) .. '}')
  if m[8] == '1' then
    local currency = redis.call('HGET', m[1], 'currency')
    if currency then
      local daily = m[6] .. currency
      local delta = tonumber(m[3])
      if delta >= 0 then
        redis.call('HINCRBY', daily, 'deposits', delta)
      else
        redis.call('HINCRBY', daily, 'withdrawals', -delta)
      end
      redis.call('HINCRBY', daily, 'count', 1)
    end
  end
end
return #moves
"""


class ViewWriter:
    """A ViewStore on Redis. Exactly-once effect: ops and checkpoint in one MULTI/EXEC; offsets at
    or below the checkpoint are skipped.

    The checkpoint hash is WATCHed, so two writers that briefly own one partition during a
    rebalance cannot both apply the same events: the second EXEC fails and re-reads.
    """

    def __init__(self, client: redis.Redis, view: str, generation: int) -> None:
        self.client = client
        self.view, self.generation = view, generation
        self.prefix = layout.prefix(view, generation)
        self.checkpoints = layout.checkpoints(view, generation)
        self.committed = layout.committed(view, generation)  # group offsets as last committed by readers
        self.money_moved = client.register_script(MONEY_MOVED)
        # Checkpoints as last seen; they only grow, so anything at or below is surely applied.
        self.known_checkpoints: dict[int, int] = {}
        # Whether queries read this generation (kept fresh by the projector's status timer): a
        # generation being built has no readers to notify.
        self.serving = True

    async def apply(self, events: Sequence[ProjectedEvent]) -> list[ProjectedEvent]:
        """The events applied now; the rest were at or below the checkpoint (applied before)."""
        if not events:
            return []
        partitions = sorted({e.partition for e in events})
        while True:
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(self.checkpoints)
                    raw = await pipe.hmget(self.checkpoints, [str(p) for p in partitions])
                    done = {p: int(v) if v is not None else -1 for p, v in zip(partitions, raw, strict=True)}
                    lost(self.view, self.generation, self.known_checkpoints, done)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    applied, last = [], dict(done)
                    ops = []
                    for event in events:
                        if event.offset <= last[event.partition]:
                            continue
                        ops.extend(event.ops)
                        last[event.partition] = event.offset
                        applied.append(event)
                    self._queue(pipe, ops)
                    moved = {str(p): o for p, o in last.items() if o != done[p]}
                    if moved:
                        pipe.hset(self.checkpoints, mapping=moved)  # type: ignore[arg-type]
                        await pipe.execute()
                    self.known_checkpoints.update(last)
                    return applied
                except WatchError:
                    continue

    async def load_checkpoints(self, partitions: Sequence[int]) -> dict[int, int]:
        ordered = sorted(partitions)
        if not ordered:
            return {}
        raw = await self.client.hmget(self.checkpoints, [str(p) for p in ordered])
        found = {p: int(cp) for p, cp in zip(ordered, raw, strict=True) if cp is not None}
        lost(self.view, self.generation, self.known_checkpoints, {p: found.get(p, -1) for p in ordered})
        for p, cp in found.items():
            self.known_checkpoints[p] = max(cp, self.known_checkpoints.get(p, -1))
        return found

    async def record_commits(self, offsets: Mapping[int, int]) -> None:
        """Remember the group offsets this generation's readers committed last (after Kafka took
        them): an offset found below them later was set by someone else, an operator's reset."""
        if offsets:
            await self.client.hset(self.committed, mapping={str(p): o for p, o in offsets.items()})

    async def apply_once(self, marker: str, ops: Sequence[Op]) -> bool:
        """Applies ops unless `marker` was applied before (re-driven dead letters: their offsets
        are already behind the checkpoint). False when it had been applied."""
        replayed = layout.replayed(self.view, self.generation)
        while True:
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(replayed)
                    if await pipe.sismember(replayed, marker):
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self._queue(pipe, ops)
                    pipe.sadd(replayed, marker)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def notify(self, applied: Sequence[ProjectedEvent]) -> None:
        """After a committed batch: one message per changed row on `<view key>:changed:<subject>`,
        carrying the row's newest version and the event's coordinates (for live updates)."""
        if not self.serving:
            return
        newest: dict[str, ProjectedEvent] = {}
        for event in applied:
            if event.subject is not None:
                newest[event.subject] = event
        if not newest:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for subject, event in newest.items():
                message = orjson.dumps(
                    {"version": event.version, "partition": event.partition, "offset": event.offset}
                )
                pipe.publish(layout.changes_channel(self.view, subject), message)
            await pipe.execute()

    async def publish_status(self, lags: dict[int, int], now_ms: int) -> None:
        """The projector's heartbeat for `/views` and the operator CLI: per-partition lag (records
        of the source partition not fetched yet) and when it was measured."""
        async with self.client.pipeline(transaction=False) as pipe:
            mapping: dict[str | bytes, int] = {f"{layout.LAG}{p}": lag for p, lag in lags.items()}
            mapping["updated_at_ms"] = now_ms
            pipe.hset(layout.status(self.view, self.generation), mapping=mapping)  # type: ignore[arg-type]
            await pipe.execute()

    async def generation_state(self) -> GenerationState:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(layout.current(self.view))
            pipe.hgetall(layout.meta(self.view, self.generation))
            pipe.hgetall(self.checkpoints)
            current, meta, checkpoints = await pipe.execute()
        state = meta.get(b"state")
        return GenerationState(
            current=int(current) if current is not None else None,
            meta_state=state.decode() if state is not None else None,
            caught_up=not behind(int_map(checkpoints), int_map(meta, layout.TARGET)),
        )

    async def go_live(self) -> None:
        await self.client.hset(layout.meta(self.view, self.generation), "state", "live")

    def _queue(self, pipe: redis.client.Pipeline, ops: Sequence[Op]) -> None:
        """Buffers the ops' commands in the transaction, in order (nothing is sent before EXEC);
        each run of money movements goes as one script call."""
        prefix, moves = self.prefix, list[list[str]]()
        for op in ops:
            match op:
                case MoneyMoved():
                    moves.append(
                        [
                            prefix + op.account_key,
                            prefix + op.transactions_key,
                            str(op.delta),
                            str(op.version),
                            orjson.dumps(op.entry)[:-1].decode(),  # the script appends balance_after
                            prefix + op.daily_prefix,
                            op.updated_at,
                            "1" if op.daily else "0",
                        ]
                    )
                    continue
            self._move_money(pipe, moves)
            match op:
                case HashSet(key, fields):
                    pipe.hset(prefix + key, mapping=fields)  # type: ignore[arg-type]
                case HashIncrement(key, field, amount):
                    pipe.hincrby(prefix + key, field, amount)
                case SetAdd(key, member):
                    pipe.sadd(prefix + key, member)
                case SortedSetAdd(key, score, member):
                    pipe.zadd(prefix + key, {member: score})
        self._move_money(pipe, moves)

    def _move_money(self, pipe: redis.client.Pipeline, moves: list[list[str]]) -> None:
        if moves:
            # Among the pipeline's scripts, it is loaded again (SCRIPT EXISTS, LOAD) before the
            # transaction if Redis lost it.
            pipe.scripts.add(self.money_moved)  # type: ignore[arg-type]
            pipe.execute_command("EVALSHA", self.money_moved.sha, 0, orjson.dumps(moves))
            moves.clear()

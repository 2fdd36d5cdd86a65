package contract;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.generic.GenericRecordBuilder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;

/** Steps a..j on a fresh account, each reading its CommandResult, then the account's events. */
final class Scenario {
    private static final Duration RESULT_WITHIN = Duration.ofSeconds(60);

    private final Bus bus;
    private final Codec codec;
    private final Schemas local;
    private final Schema depositV3;
    private final String accountId = "java-" + UUID.randomUUID();
    private final String correlationId = "java-scenario-" + UUID.randomUUID();
    private final Map<String, Result> results = new LinkedHashMap<>();
    private final Map<String, String> commandIds = new LinkedHashMap<>();
    private final Map<String, Integer> sentTo = new LinkedHashMap<>();
    private final List<Map<String, Object>> events = new ArrayList<>();
    private int partitions;
    private int partition;

    Scenario(Bus bus, Codec codec, Schemas local, Schema depositV3) {
        this.bus = bus;
        this.codec = codec;
        this.local = local;
        this.depositV3 = depositV3;
    }

    void run() {
        partitions = bus.partitions(Bus.COMMANDS);
        for (String topic : new String[] {Bus.RESULTS, Bus.EVENTS}) {
            Check.equal(partitions, bus.partitions(topic), topic + " has as many partitions as " + Bus.COMMANDS);
        }
        partition = Bus.partitionOf(accountId, partitions);
        System.out.println("     account " + accountId + " is on partition " + partition + " of " + partitions);

        String a = newId();
        send("a", a, accountId, openAccount(a, accountId, 0L), null);
        expect("a", "ACCEPTED", 1L, null);

        String b = newId();
        send("b", b, accountId, deposit(1, b, 500L, Map.of()), null);
        expect("b", "ACCEPTED", 2L, null);

        String c = newId();
        send("c", c, accountId, deposit(2, c, 250L, Map.of("channel", "java")), null);
        expect("c", "ACCEPTED", 3L, null);

        String d = newId();
        Schema withdraw = local.get("WithdrawMoney", 1).schema();
        GenericRecord tooMuch = command(withdraw, d, accountId, Map.of("amount", 100_000L));
        send("d", d, accountId, codec.encode(withdraw, tooMuch), null);
        expect("d", "REJECTED", 3L, "insufficient_funds");

        // b's command again, with a new issued_at (not part of the body): b's result again.
        send("e", b, accountId, deposit(1, b, 500L, Map.of()), null);
        expect("e", "ACCEPTED", 2L, null);
        Check.equal(results.get("b").position(), results.get("e").position(), "e: the retry answers b's position");

        send("f", b, accountId, deposit(1, b, 999L, Map.of()), null);
        expect("f", "REJECTED", 3L, "idempotency_key_reused");

        String other = "java-" + UUID.randomUUID();
        String g = newId();
        send("g", g, other, openAccount(g, other, 1L << 62), null);
        expect("g", "REJECTED", 0L, "invalid_overdraft_limit"); // 0: g's account does not exist

        byte[] garbage = {(byte) 0xC3, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 'n', 'o', 't', ' ', 'a', 'v', 'r', 'o'};
        send("h", newId(), accountId, garbage, null);
        expect("h", "REJECTED", 3L, "malformed_command");

        String i = newId();
        send("i", i, accountId, deposit(2, i, 1L, Map.of("channel", "java")), (partition + 1) % partitions);
        expect("i", "REJECTED", 3L, "wrong_partition");

        String j = newId();
        Map<String, Object> memo = Map.of("amount", 40L, "memo", "from java");
        send("j", j, accountId, codec.encode(depositV3, command(depositV3, j, accountId, memo)), null);
        expect("j", "ACCEPTED", 4L, null);

        checkEvents(a, b, c, j);
    }

    Map<String, Object> summary() {
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("account_id", accountId);
        json.put("partition", partition);
        json.put("partitions", partitions);
        json.put("command_ids", commandIds);
        json.put("sent_partitions", sentTo);
        Map<String, Object> byStep = new LinkedHashMap<>();
        results.forEach((step, result) -> byStep.put(step, result.toJson()));
        json.put("results", byStep);
        json.put("events", events);
        return json;
    }

    // --- commands -------------------------------------------------------------------------------

    private static String newId() {
        return UUID.randomUUID().toString();
    }

    private byte[] openAccount(String commandId, String id, long overdraftLimit) {
        Schema schema = local.get("OpenAccount", 1).schema();
        return codec.encode(schema, command(schema, commandId, id,
                Map.of("owner_id", "java-team", "currency", "CHF", "overdraft_limit", overdraftLimit)));
    }

    private byte[] deposit(int version, String commandId, long amount, Map<String, Object> extra) {
        Schema schema = local.get("DepositMoney", version).schema();
        Map<String, Object> payload = new LinkedHashMap<>(extra);
        payload.put("amount", amount);
        return codec.encode(schema, command(schema, commandId, accountId, payload));
    }

    /** Envelope first (command_id, aggregate_id, expected_version, correlation_id, issued_at), then payload. */
    private GenericRecord command(Schema schema, String commandId, String aggregateId, Map<String, Object> payload) {
        GenericRecordBuilder record = new GenericRecordBuilder(schema)
                .set("command_id", commandId)
                .set("aggregate_id", aggregateId)
                .set("expected_version", null)
                .set("correlation_id", correlationId)
                .set("issued_at", System.currentTimeMillis());
        payload.forEach(record::set);
        return record.build();
    }

    // --- sending and reading results ------------------------------------------------------------

    private void send(String step, String commandId, String aggregateId, byte[] value, Integer explicitPartition) {
        int home = Bus.partitionOf(aggregateId, partitions);
        Map<Integer, Long> ends = bus.endOffsets(Bus.RESULTS);
        RecordMetadata sent = bus.send(aggregateId, value, commandId, explicitPartition);
        sentTo.put(step, sent.partition());
        if (explicitPartition == null) {
            Check.equal(home, sent.partition(),
                    step + ": Java's default partitioner put the command on the murmur2 partition");
        } else {
            Check.equal(explicitPartition, sent.partition(), step + ": the command went to the partition asked for");
        }
        ConsumerRecord<String, byte[]> found =
                bus.awaitKey(Bus.RESULTS, home, ends.get(home), commandId, RESULT_WITHIN);
        if (found == null) {
            for (int p = 0; p < partitions; p++) {
                if (p != home && bus.awaitKey(Bus.RESULTS, p, ends.get(p), commandId, Duration.ofSeconds(1)) != null) {
                    throw Check.fail(step + ": the result of " + commandId + " landed on results.account[" + p
                            + "], not on the aggregate's partition " + home);
                }
            }
            throw Check.fail(step + ": no result keyed " + commandId + " on results.account[" + home + "] within "
                    + RESULT_WITHIN.toSeconds() + "s");
        }
        Result result = Result.of(found.partition(), found.offset(), codec.decodeAsV1(found.value()),
                codec.decodeExact(found.value()));
        Check.equal(commandId, result.commandId(), step + ": the result's command_id");
        Check.equal(aggregateId, result.aggregateId(), step + ": the result's aggregate_id");
        System.out.println("     " + step + ": " + result.status() + " version " + result.version() + " position "
                + result.position()
                + (result.reason() == null ? "" : " reason " + result.reason() + " / " + result.reasonCode()));
        results.put(step, result);
        commandIds.put(step, commandId);
    }

    /** reason null: accepted. */
    private void expect(String step, String status, long version, String reason) {
        Result result = results.get(step);
        Check.equal(status, result.status(), step + ": status");
        Check.equal(version, result.version(), step + ": version");
        Check.equal(reason, result.reason(), step + ": reason");
        Check.equal(reason, result.reasonCode(), step + ": reason_code");
        if (reason == null) {
            Check.that(result.position() != null, step + ": an accepted result has a position");
        }
    }

    // --- the account's events -------------------------------------------------------------------

    private void checkEvents(String a, String b, String c, String j) {
        long from = results.get("a").eventOffset(partition);
        long until = bus.endOffsets(Bus.EVENTS).get(partition);
        Map<Long, Long> offsetByVersion = new LinkedHashMap<>();
        Set<String> rejected = Set.of(commandIds.get("d"), commandIds.get("h"), commandIds.get("i"));
        List<Long> causedByRejected = new ArrayList<>();
        for (ConsumerRecord<String, byte[]> record : bus.read(Bus.EVENTS, partition, from, until)) {
            GenericRecord asV1 = codec.decodeAsV1(record.value());
            String commandId = Text.str(asV1.get("command_id"));
            if (rejected.contains(commandId)) {
                causedByRejected.add(record.offset());
            }
            if (!accountId.equals(Text.str(asV1.get("aggregate_id")))) {
                continue;
            }
            GenericRecord exact = codec.decodeExact(record.value());
            Schema writer = codec.writerOf(record.value());
            Map<String, Object> event = new LinkedHashMap<>();
            event.put("version", asV1.get("version"));
            event.put("type", Text.str(asV1.get("event_type")));
            event.put("amount", asV1.hasField("amount") ? asV1.get("amount") : null);
            event.put("channel", exact.hasField("channel") ? Text.str(exact.get("channel")) : null);
            event.put("command_id", commandId);
            event.put("actor", exact.hasField("actor") ? Text.str(exact.get("actor")) : null);
            event.put("key", record.key());
            event.put("offset", record.offset());
            event.put("writer", writer.getFullName() + "@" + Schemas.hex(Schemas.fingerprint(writer)));
            Check.equal(writer.getName(), event.get("type"), "event " + record.key() + ": event_type names its record");
            events.add(event);
            offsetByVersion.put((Long) asV1.get("version"), record.offset());
        }
        Check.equal(List.of(), causedByRejected, "offsets of events caused by the rejected commands d, h, i");
        Check.equal(List.of(1L, 2L, 3L, 4L), pick("version"), "the account's events are versions 1..4, contiguous");
        Check.equal(List.of("AccountOpened", "MoneyDeposited", "MoneyDeposited", "MoneyDeposited"), pick("type"),
                "the account's event types");
        Check.equal(Arrays.asList(null, 500L, 250L, 40L), pick("amount"), "the deposits' amounts");
        Check.equal(List.of(a, b, c, j), pick("command_id"), "each event names the command that caused it");
        Check.equal(List.of(Bus.ACTOR, Bus.ACTOR, Bus.ACTOR, Bus.ACTOR), pick("actor"),
                "each event names the actor its command's header gave");
        for (Map<String, Object> event : events) {
            Check.equal(String.format("%s:%010d", accountId, (Long) event.get("version")), event.get("key"),
                    "event key <aggregate_id>:<version:010d>");
        }
        String[] accepted = {"a", "b", "c", "j"};
        for (int v = 0; v < accepted.length; v++) {
            Check.equal(offsetByVersion.get(v + 1L), results.get(accepted[v]).eventOffset(partition),
                    accepted[v] + ": the result's position is the offset of event version " + (v + 1));
        }
    }

    private List<Object> pick(String field) {
        return events.stream().map(e -> e.get(field)).toList();
    }
}

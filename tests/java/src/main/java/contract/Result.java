package contract;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.apache.avro.generic.GenericRecord;

/**
 * One CommandResult, read twice: through the v1 reader (an old consumer, writer schema from the store)
 * and with its exact writer schema (for the fields added after v1: reason_code, request_hash).
 */
record Result(
        String commandId,
        String aggregateId,
        int partition,
        long offset,
        String status,
        Long version,
        String position,
        String reason,
        String reasonCode,
        String detail,
        String requestHash) {

    static Result of(int partition, long offset, GenericRecord asV1, GenericRecord exact) {
        List<String> differ = new ArrayList<>();
        for (String field : new String[] {"command_id", "aggregate_id", "correlation_id", "status", "version",
                "position", "reason", "detail"}) {
            if (!Objects.equals(Text.of(asV1.get(field)), Text.of(exact.get(field)))) {
                differ.add(field);
            }
        }
        Check.that(differ.isEmpty(), "result " + asV1.get("command_id")
                + " reads the same through the v1 reader and its writer schema " + differ);
        return new Result(
                Text.str(asV1.get("command_id")),
                Text.str(asV1.get("aggregate_id")),
                partition,
                offset,
                Text.str(asV1.get("status")),
                (Long) asV1.get("version"),
                Text.str(asV1.get("position")),
                Text.str(asV1.get("reason")),
                optional(exact, "reason_code"),
                Text.str(asV1.get("detail")),
                optional(exact, "request_hash"));
    }

    private static String optional(GenericRecord record, String field) {
        return record.hasField(field) ? Text.str(record.get(field)) : null;
    }

    /** "<partition>-<offset>" of an accepted result's last event. */
    long eventOffset(int expectedPartition) {
        String[] parts = position == null ? new String[0] : position.split("-");
        Check.that(parts.length == 2, "position \"" + position + "\" has the form <partition>-<offset>");
        Check.equal(expectedPartition, Integer.parseInt(parts[0]),
                "position " + position + " is on the aggregate's partition");
        return Long.parseLong(parts[1]);
    }

    Map<String, Object> toJson() {
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("command_id", commandId);
        json.put("aggregate_id", aggregateId);
        json.put("partition", partition);
        json.put("offset", offset);
        json.put("status", status);
        json.put("version", version);
        json.put("position", position);
        json.put("reason", reason);
        json.put("reason_code", reasonCode);
        json.put("detail", detail);
        json.put("request_hash", requestHash);
        return json;
    }
}

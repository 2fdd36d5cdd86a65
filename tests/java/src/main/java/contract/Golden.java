package contract;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;

/** tests/golden/*.bin: decode with the exact writer schema, compare with the .json, re-encode byte for byte. */
final class Golden {
    private final Schemas local;
    private final Codec codec;
    private final ObjectMapper json = new ObjectMapper();
    private int decoded;
    private int byteIdentical;
    private int decodedAsV1;

    Golden(Schemas local, Codec codec) {
        this.local = local;
        this.codec = codec;
    }

    void run(Path folder) throws IOException {
        List<Path> files;
        try (Stream<Path> list = Files.list(folder)) {
            files = list.filter(p -> p.getFileName().toString().endsWith(".bin")).sorted().toList();
        }
        Check.that(!files.isEmpty(), "golden files found in " + folder);
        for (Path file : files) {
            check(file);
        }
        Check.equal(files.size(), byteIdentical, "golden files re-encoded byte for byte");
    }

    Map<String, Object> summary() {
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("decoded", decoded);
        summary.put("byte_identical", byteIdentical);
        summary.put("decoded_as_v1", decodedAsV1);
        return summary;
    }

    private void check(Path file) throws IOException {
        String label = file.getFileName().toString().replaceFirst("\\.bin$", "");
        byte[] bytes = Files.readAllBytes(file);
        JsonNode expected = json.readTree(file.resolveSibling(label + ".json").toFile());
        long fingerprint = Schemas.peekFingerprint(bytes);
        Schemas.Versioned writer = local.byFingerprint(fingerprint).orElseThrow(() ->
                Check.fail("golden " + label + ": no schema file has fingerprint " + Schemas.hex(fingerprint)));
        Check.equal(label, writer.label(), "golden " + label + ": its fingerprint names its schema file");

        BinaryMessageDecoder<GenericRecord> exact = new BinaryMessageDecoder<>(GenericData.get(), writer.schema());
        GenericRecord record = exact.decode(bytes);
        Set<String> fieldNames = new TreeSet<>();
        writer.schema().getFields().forEach(f -> fieldNames.add(f.name()));
        Set<String> jsonNames = new TreeSet<>();
        expected.fieldNames().forEachRemaining(jsonNames::add);
        Check.equal(fieldNames, jsonNames, "golden " + label + ": the JSON has the schema's fields");
        Check.equal(List.of(), differences(record, expected), "golden " + label + ": fields differing from the JSON");
        decoded++;

        Check.that(Arrays.equals(bytes, codec.encode(writer.schema(), record)),
                "golden " + label + ": BinaryMessageEncoder writes the file's bytes");
        byteIdentical++;

        GenericRecord asV1 = codec.decodeAsV1(bytes);
        Check.equal(List.of(), differences(asV1, expected), "golden " + label + ": fields differing when read as v1");
        decodedAsV1++;
    }

    /** Fields of the record (all of them are in the JSON) whose value is not the JSON's. */
    private static List<String> differences(GenericRecord record, JsonNode expected) {
        List<String> differ = new ArrayList<>();
        for (Schema.Field field : record.getSchema().getFields()) {
            Object want = plain(expected.get(field.name()));
            Object got = Text.of(record.get(field.name()));
            if (!Objects.equals(want, got)) {
                differ.add(field.name() + ": " + want + " != " + got);
            }
        }
        return differ;
    }

    /** JSON strings, integers, booleans, null, and {"timestamp-millis": n} as Long. */
    private static Object plain(JsonNode node) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return node.asText();
        }
        if (node.isBoolean()) {
            return node.asBoolean();
        }
        if (node.isIntegralNumber()) {
            return node.asLong();
        }
        if (node.isObject() && node.size() == 1 && node.has("timestamp-millis")) {
            return node.get("timestamp-millis").asLong();
        }
        throw Check.fail("unexpected value in a golden JSON: " + node);
    }
}

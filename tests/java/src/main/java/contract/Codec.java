package contract;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

/** Avro single-object frames, with Avro's own BinaryMessageEncoder / BinaryMessageDecoder. */
final class Codec {
    private final Schemas local;
    private final QueryApiSchemaStore store;
    private final Map<Schema, BinaryMessageEncoder<GenericRecord>> encoders = new ConcurrentHashMap<>();
    private final Map<Schema, BinaryMessageDecoder<GenericRecord>> v1Decoders = new ConcurrentHashMap<>();

    Codec(Schemas local, QueryApiSchemaStore store) {
        this.local = local;
        this.store = store;
    }

    byte[] encode(Schema writer, GenericRecord record) {
        BinaryMessageEncoder<GenericRecord> encoder =
                encoders.computeIfAbsent(writer, s -> new BinaryMessageEncoder<>(GenericData.get(), s));
        try {
            ByteBuffer buffer = encoder.encode(record);
            byte[] bytes = new byte[buffer.remaining()];
            buffer.get(bytes);
            return bytes;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The frame's writer schema: a local file, else the schema store. */
    Schema writerOf(byte[] frame) {
        long fingerprint = Schemas.peekFingerprint(frame);
        return local.byFingerprint(fingerprint)
                .map(Schemas.Versioned::schema)
                .or(() -> java.util.Optional.ofNullable(store.findByFingerprint(fingerprint)))
                .orElseThrow(() -> Check.fail("unknown writer schema " + Schemas.hex(fingerprint)
                        + " (not a local file, 404 from the schema store)"));
    }

    /**
     * As an old consumer built against v1 only: the reader is the v1 schema of the frame's record, and
     * the decoder asks the schema store for any writer schema it does not have.
     */
    GenericRecord decodeAsV1(byte[] frame) {
        Schema reader = local.v1Of(writerOf(frame).getFullName());
        BinaryMessageDecoder<GenericRecord> decoder = v1Decoders.computeIfAbsent(
                reader, r -> new BinaryMessageDecoder<>(GenericData.get(), r, store));
        return decode(decoder, frame);
    }

    /** With the exact writer schema as reader: every field the writer wrote. */
    GenericRecord decodeExact(byte[] frame) {
        Schema writer = writerOf(frame);
        return decode(new BinaryMessageDecoder<>(GenericData.get(), writer), frame);
    }

    private static GenericRecord decode(BinaryMessageDecoder<GenericRecord> decoder, byte[] frame) {
        try {
            return decoder.decode(frame);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}

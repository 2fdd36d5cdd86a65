package contract;

import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Utils;

/** The three account topics, through the plain Kafka Java client. */
final class Bus implements AutoCloseable {
    static final String COMMANDS = "commands.account";
    static final String RESULTS = "results.account";
    static final String EVENTS = "events.account";

    private final KafkaProducer<String, byte[]> producer;
    private final KafkaConsumer<String, byte[]> consumer;

    private final String bootstrap;

    Bus(String bootstrap) {
        this.bootstrap = bootstrap;
        Properties p = security();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "java-contract-client");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        producer = new KafkaProducer<>(p);

        Properties c = security();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-contract-client");
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        consumer = new KafkaConsumer<>(c);
    }

    /**
     * Client security settings (security.protocol, sasl.mechanism, sasl.jaas.config, ssl.*) from the
     * properties file KAFKA_CLIENT_CONFIG names, as a foreign system is handed its credentials; none
     * when unset (a PLAINTEXT broker).
     */
    static Properties security() {
        Properties props = new Properties();
        String file = System.getenv("KAFKA_CLIENT_CONFIG");
        if (file != null && !file.isEmpty()) {
            try (Reader in = Files.newBufferedReader(Path.of(file), StandardCharsets.UTF_8)) {
                props.load(in);
            } catch (IOException e) {
                throw new IllegalStateException("cannot read KAFKA_CLIENT_CONFIG " + file, e);
            }
        }
        return props;
    }

    /**
     * Appends a forged event to the event store with a producer of its own; returns the broker's refusal
     * (null if it was accepted). Only the command processors may write events.
     */
    TopicAuthorizationException forgeEvent(String key, byte[] value) {
        Properties p = security();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "java-contract-forger");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "20000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "10000");
        try (KafkaProducer<String, byte[]> forger = new KafkaProducer<>(p)) {
            forger.send(new ProducerRecord<>(EVENTS, 0, key, value)).get();
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof TopicAuthorizationException refused) {
                return refused;
            }
            throw new IllegalStateException("produce to " + EVENTS + " failed otherwise", e.getCause());
        } catch (TopicAuthorizationException refused) {
            return refused;
        }
    }

    int partitions(String topic) {
        return producer.partitionsFor(topic).size();
    }

    /** The partition rule of schemas/README.md, with Kafka's own murmur2. */
    static int partitionOf(String aggregateId, int partitions) {
        return Utils.toPositive(Utils.murmur2(aggregateId.getBytes(StandardCharsets.UTF_8))) % partitions;
    }

    /** read_committed end offsets (last stable offsets) of every partition of a topic. */
    Map<Integer, Long> endOffsets(String topic) {
        List<TopicPartition> all = IntStream.range(0, partitions(topic))
                .mapToObj(i -> new TopicPartition(topic, i)).toList();
        return consumer.endOffsets(all, Duration.ofSeconds(10)).entrySet().stream()
                .collect(Collectors.toMap(e -> e.getKey().partition(), Map.Entry::getValue));
    }

    /** Who this system's commands act as (the `actor` header): recorded in every event they cause. */
    static final String ACTOR = "java-team-batch";

    /** A command with headers command_id and actor; partition null lets the default partitioner place it. */
    RecordMetadata send(String key, byte[] value, String commandId, Integer partition) {
        ProducerRecord<String, byte[]> record = new ProducerRecord<>(COMMANDS, partition, key, value);
        record.headers().add("command_id", commandId.getBytes(StandardCharsets.UTF_8));
        record.headers().add("actor", ACTOR.getBytes(StandardCharsets.UTF_8));
        try {
            return producer.send(record).get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("produce to " + COMMANDS + " failed", e.getCause());
        }
    }

    /** The first record keyed {@code key} on topic[partition] from offset {@code from}, or null. */
    ConsumerRecord<String, byte[]> awaitKey(String topic, int partition, long from, String key, Duration within) {
        TopicPartition tp = new TopicPartition(topic, partition);
        consumer.assign(List.of(tp));
        consumer.seek(tp, from);
        long deadline = System.nanoTime() + within.toNanos();
        while (System.nanoTime() < deadline) {
            for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                if (key.equals(record.key())) {
                    return record;
                }
            }
        }
        return null;
    }

    /** Committed records of topic[partition] in [from, until). */
    List<ConsumerRecord<String, byte[]>> read(String topic, int partition, long from, long until) {
        TopicPartition tp = new TopicPartition(topic, partition);
        consumer.assign(List.of(tp));
        consumer.seek(tp, from);
        List<ConsumerRecord<String, byte[]>> seen = new ArrayList<>();
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (consumer.position(tp) < until) {
            if (System.nanoTime() > deadline) {
                throw Check.fail("could not read " + tp + " up to offset " + until);
            }
            for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                if (record.offset() < until) {
                    seen.add(record);
                }
            }
        }
        return seen;
    }

    @Override
    public void close() {
        producer.close(Duration.ofSeconds(5));
        consumer.close();
    }
}

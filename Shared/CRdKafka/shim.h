#ifndef FISSION_CRDKAFKA_SHIM_H
#define FISSION_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
// The mock cluster is our local broker (DESIGN.md §6); its API ships in the same package.
#include <librdkafka/rdkafka_mock.h>

// rd_kafka_producev is variadic, which Swift cannot call. This one fixed-shape call is the whole
// produce path; its return value is the call's own error (never rd_kafka_last_error(), which
// races between threads). Headers pass to librdkafka only on success.
static inline rd_kafka_resp_err_t fission_rd_kafka_produce(
    rd_kafka_t *rk, const char *topic, int32_t partition,
    const void *key, size_t key_len, const void *value, size_t value_len,
    rd_kafka_headers_t *headers, void *msg_opaque) {
    return rd_kafka_producev(
        rk,
        RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)value, value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(headers),
        RD_KAFKA_V_OPAQUE(msg_opaque),
        RD_KAFKA_V_END);
}
#endif

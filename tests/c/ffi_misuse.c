/*
 * The C ABI under misuse and under load, for AddressSanitizer + UBSan and
 * valgrind (driven by tests/sanitizers.rs). Every exported function gets
 * NULL, empty, non-UTF-8 and huge inputs and must return its documented
 * status; then, when DPS_ENDPOINT/DPS_CA_FILE/DPS_SYMMETRIC_KEY are set, real
 * registrations against the emulator: blocking, step API, cancel from
 * another thread during a long wait with the client reused, lookup,
 * connection string size query, a refused registration, the log callback.
 * Everything allocated is freed, so the leak checkers must report nothing.
 * Exit 0 and print "ok <n> checks" on success.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dps.h"

static int checks, failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        checks++;                                                                     \
        if (!(cond)) {                                                                \
            failures++;                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                             \
    } while (0)
#define EXPECT(call, status) CHECK((call) == (status))

static const char *BAD_UTF8 = "\xff\xfe\xfd";
static char *huge;

static void log_cb(void *userdata, uint32_t level, const char *message) {
    (void)level;
    if (message != NULL && strlen(message) > 0) (*(unsigned *)userdata)++;
}

static void status_cb(void *userdata, uint32_t event, uint32_t wait_ms, dps_status cause) {
    (void)wait_ms;
    (void)cause;
    if (event >= DPS_EVENT_REGISTERING && event <= DPS_EVENT_FAILED) (*(unsigned *)userdata)++;
}

static void misuse_without_network(void) {
    dps_config *cfg = NULL;
    const char *string_args[] = {NULL, "", NULL /* bad utf8 */, NULL /* huge */};
    string_args[2] = BAD_UTF8;
    string_args[3] = huge;

    /* dps_config_new */
    EXPECT(dps_config_new(NULL, "dev", &cfg), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_new("0ne00000001", "dev", NULL), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_new("", "dev", &cfg), DPS_ERR_INVALID_ID_SCOPE);
    EXPECT(dps_config_new(BAD_UTF8, "dev", &cfg), DPS_ERR_INVALID_UTF8);
    EXPECT(dps_config_new(huge, "dev", &cfg), DPS_ERR_INVALID_ID_SCOPE);
    EXPECT(dps_config_new("0ne00000001", "", &cfg), DPS_ERR_INVALID_REGISTRATION_ID);
    EXPECT(dps_config_new("0ne00000001", BAD_UTF8, &cfg), DPS_ERR_INVALID_UTF8);
    EXPECT(dps_config_new("0ne00000001", huge, &cfg), DPS_ERR_INVALID_REGISTRATION_ID);
    CHECK(cfg == NULL);
    EXPECT(dps_config_new("0ne00000001", NULL, &cfg), DPS_OK); /* ID optional (X.509 CN) */
    dps_config_free(cfg);
    cfg = NULL;
    EXPECT(dps_config_new("0ne00000001", "dev", &cfg), DPS_OK);

    /* Every string setter: NULL, empty, non-UTF-8, huge. Never DPS_OK for
     * garbage, never a crash; the message is set after a failure. */
    for (int i = 0; i < 4; i++) {
        const char *s = string_args[i];
        dps_status expect_null = DPS_ERR_NULL_ARGUMENT;
        dps_status st;
        st = dps_config_set_symmetric_key(cfg, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_INVALID_KEY);
        st = dps_config_set_group_key(cfg, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_INVALID_KEY);
        st = dps_config_set_payload_json(cfg, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_INVALID_PAYLOAD);
        st = dps_config_set_endpoint(cfg, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_INVALID_ENDPOINT);
        st = dps_config_set_api_version(cfg, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_INVALID_ARGUMENT);
        st = dps_config_add_trusted_ca_pem(cfg, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_INVALID_TRUST_ANCHOR);
        st = dps_config_add_trusted_ca_file(cfg, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_FILE_READ);
        st = dps_config_set_proxy(cfg, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_INVALID_PROXY);
        st = dps_config_set_x509_pem(cfg, s, s, NULL);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_INVALID_CERTIFICATE);
        st = dps_config_set_x509_pem_files(cfg, s, s, s);
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_FILE_READ);
        st = dps_config_set_pkcs12_file(cfg, s, "");
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : st == DPS_ERR_FILE_READ);
        st = dps_config_set_user_agent_suffix(cfg, s);
        /* "" clears the suffix (documented); huge is too long. */
        CHECK(s == NULL ? st == expect_null : s == BAD_UTF8 ? st == DPS_ERR_INVALID_UTF8 : s == huge ? st == DPS_ERR_INVALID_ARGUMENT : st == DPS_OK);
        CHECK(st == DPS_OK || dps_config_last_error(cfg) != NULL);
    }
    /* PKCS#12 bytes: NULL, empty, garbage, huge garbage. */
    EXPECT(dps_config_set_pkcs12(cfg, NULL, 10, "pw"), DPS_ERR_NULL_ARGUMENT);
    {
        dps_status st = dps_config_set_pkcs12(cfg, (const uint8_t *)huge, 0, "pw");
        CHECK(st == DPS_ERR_INVALID_PKCS12 || st == DPS_ERR_UNSUPPORTED);
        st = dps_config_set_pkcs12(cfg, (const uint8_t *)huge, strlen(huge), "pw");
        CHECK(st == DPS_ERR_INVALID_PKCS12 || st == DPS_ERR_UNSUPPORTED);
        st = dps_config_set_pkcs12(cfg, (const uint8_t *)huge, 16, BAD_UTF8);
        CHECK(st == DPS_ERR_INVALID_UTF8 || st == DPS_ERR_INVALID_PKCS12 || st == DPS_ERR_UNSUPPORTED);
    }
    /* Scalars out of range. */
    EXPECT(dps_config_set_default_roots(cfg, 0xffffffffu), DPS_ERR_INVALID_ARGUMENT);
    EXPECT(dps_config_set_timeout_ms(cfg, 0), DPS_ERR_INVALID_ARGUMENT);
    EXPECT(dps_config_set_request_timeout_ms(cfg, 0), DPS_ERR_INVALID_ARGUMENT);
    EXPECT(dps_config_set_sas_ttl_s(cfg, 0), DPS_ERR_INVALID_ARGUMENT);
    EXPECT(dps_config_set_backoff_ms(cfg, 2, 1), DPS_ERR_INVALID_ARGUMENT);
    EXPECT(dps_config_set_timeout_ms(cfg, 0xffffffffu), DPS_OK);
    EXPECT(dps_config_set_poll_interval_ms(cfg, 0xffffffffu), DPS_OK);
    EXPECT(dps_config_set_backoff_ms(cfg, 0xffffffffu, 0xffffffffu), DPS_OK);
    /* NULL config on every setter. */
    EXPECT(dps_config_set_symmetric_key(NULL, "x"), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_set_force_registration(NULL, true), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_set_default_roots(NULL, DPS_ROOTS_NONE), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_use_proxy_from_env(NULL), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_set_timeout_ms(NULL, 1), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_set_request_timeout_ms(NULL, 1), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_set_sas_ttl_s(NULL, 1), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_set_backoff_ms(NULL, 1, 2), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_set_poll_interval_ms(NULL, 1), DPS_ERR_NULL_ARGUMENT);
    EXPECT(dps_config_set_max_retry_after_ms(NULL, 1), DPS_ERR_NULL_ARGUMENT);
    CHECK(dps_config_last_error(NULL) == NULL);

    /* Clients: no credential, NULL everywhere. */
    {
        dps_client *client = NULL;
        dps_error *err = NULL;
        dps_registration *reg = NULL;
        uint32_t wait = 0;
        size_t len = 0;
        EXPECT(dps_client_new(cfg, &client, &err), DPS_ERR_NO_CREDENTIAL);
        CHECK(client == NULL && err != NULL);
        CHECK(dps_error_status(err) == DPS_ERR_NO_CREDENTIAL && dps_error_message(err) != NULL);
        dps_error_free(err);
        EXPECT(dps_client_new(NULL, &client, NULL), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_client_new(cfg, NULL, NULL), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_register(NULL, &reg, NULL), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_register(cfg, NULL, NULL), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_register(cfg, &reg, NULL), DPS_ERR_NO_CREDENTIAL);
        EXPECT(dps_client_register(NULL, &reg), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_client_step(NULL, &wait, &reg), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_client_lookup(NULL, &reg), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_client_set_event_callback(NULL, NULL, NULL), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_client_connection_string(NULL, NULL, NULL, 0, &len), DPS_ERR_NULL_ARGUMENT);
        CHECK(dps_client_last_error(NULL) == NULL);
        CHECK(dps_client_registration_id(NULL) == NULL);
        dps_client_cancel(NULL);
        dps_client_free(NULL);
        CHECK(reg == NULL);
    }

    /* Getters and frees on NULL. */
    CHECK(dps_registration_status(NULL) == DPS_REGISTRATION_UNASSIGNED);
    CHECK(dps_registration_registration_id(NULL) == NULL);
    CHECK(dps_registration_assigned_hub(NULL) == NULL);
    CHECK(dps_registration_device_id(NULL) == NULL);
    CHECK(dps_registration_substatus(NULL) == NULL);
    CHECK(dps_registration_created_at(NULL) == NULL);
    CHECK(dps_registration_last_updated_at(NULL) == NULL);
    CHECK(dps_registration_etag(NULL) == NULL);
    CHECK(dps_registration_payload_json(NULL) == NULL);
    CHECK(dps_registration_enrollment_group_id(NULL) == NULL);
    CHECK(dps_registration_error_message(NULL) == NULL);
    CHECK(dps_registration_error_code(NULL) == 0);
    CHECK(dps_registration_issued_certificate_count(NULL) == 0);
    CHECK(dps_registration_issued_certificate(NULL, 0) == NULL);
    CHECK(dps_registration_issued_certificate(NULL, (size_t)-1) == NULL);
    CHECK(dps_error_status(NULL) == DPS_ERR_NULL_ARGUMENT);
    CHECK(dps_error_message(NULL) == NULL);
    CHECK(dps_error_http_status(NULL) == 0);
    CHECK(dps_error_dps_code(NULL) == 0);
    CHECK(dps_error_tracking_id(NULL) == NULL);
    CHECK(!dps_error_retriable(NULL));
    dps_registration_free(NULL);
    dps_error_free(NULL);
    dps_config_free(NULL);

    /* Helpers. */
    {
        char buf[64];
        size_t len = 0;
        EXPECT(dps_derive_device_key(NULL, "x", buf, sizeof buf, &len), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_derive_device_key("AAAA", NULL, buf, sizeof buf, &len), DPS_ERR_NULL_ARGUMENT);
        EXPECT(dps_derive_device_key(huge, "x", buf, sizeof buf, &len), DPS_ERR_INVALID_KEY);
        EXPECT(dps_derive_device_key(BAD_UTF8, "x", buf, sizeof buf, &len), DPS_ERR_INVALID_UTF8);
        EXPECT(dps_derive_device_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", huge, buf, sizeof buf, &len),
               DPS_ERR_INVALID_REGISTRATION_ID);
        EXPECT(dps_derive_device_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "dev", NULL, 0, &len),
               DPS_ERR_BUFFER_TOO_SMALL);
        CHECK(len == 44);
        EXPECT(dps_derive_device_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "dev", buf, 44, NULL),
               DPS_ERR_BUFFER_TOO_SMALL);
        EXPECT(dps_derive_device_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "dev", buf, 45, NULL), DPS_OK);
        CHECK(strlen(buf) == 44);
        for (dps_status s = 0; s < 1000; s++) CHECK(dps_status_str(s) != NULL);
        CHECK(dps_status_str(0xffffffffu) != NULL);
        CHECK(dps_version() != NULL && dps_version_number() == DPS_VERSION_NUMBER);
        EXPECT(dps_set_log_callback(NULL, NULL, 99), DPS_ERR_INVALID_ARGUMENT);
    }
    dps_config_free(cfg);
}

static dps_config *emulator_config(const char *id, const char *key) {
    dps_config *cfg = NULL;
    EXPECT(dps_config_new(getenv("DPS_ID_SCOPE"), id, &cfg), DPS_OK);
    EXPECT(dps_config_set_endpoint(cfg, getenv("DPS_ENDPOINT")), DPS_OK);
    EXPECT(dps_config_set_default_roots(cfg, DPS_ROOTS_NONE), DPS_OK);
    EXPECT(dps_config_add_trusted_ca_file(cfg, getenv("DPS_CA_FILE")), DPS_OK);
    EXPECT(dps_config_set_symmetric_key(cfg, key), DPS_OK);
    EXPECT(dps_config_set_backoff_ms(cfg, 10, 100), DPS_OK);
    EXPECT(dps_config_set_timeout_ms(cfg, 60000), DPS_OK);
    return cfg;
}

/* Set by the status callback when the client starts a long retry wait;
 * the canceller thread waits for it, so the cancel lands during the wait
 * (a cancel issued before a registration starts applies to nothing). */
static volatile int waiting;

static void note_wait(void *userdata, uint32_t event, uint32_t wait_ms, dps_status cause) {
    (void)userdata;
    (void)cause;
    if (event == DPS_EVENT_RETRYING && wait_ms >= 10000) __atomic_store_n(&waiting, 1, __ATOMIC_SEQ_CST);
}

static void *cancel_later(void *client) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (!__atomic_load_n(&waiting, __ATOMIC_SEQ_CST)) nanosleep(&ts, NULL);
    nanosleep(&ts, NULL);
    dps_client_cancel((const dps_client *)client);
    return NULL;
}

static void with_emulator(void) {
    const char *key = getenv("DPS_SYMMETRIC_KEY");
    unsigned log_lines = 0, events = 0;
    EXPECT(dps_set_log_callback(log_cb, &log_lines, DPS_LOG_TRACE), DPS_OK);

    /* Blocking registration, lookup, connection string (size query first). */
    dps_config *cfg = emulator_config("dev-sym", key);
    dps_client *client = NULL;
    dps_registration *reg = NULL;
    EXPECT(dps_client_new(cfg, &client, NULL), DPS_OK);
    EXPECT(dps_client_set_event_callback(client, status_cb, &events), DPS_OK);
    EXPECT(dps_client_register(client, &reg), DPS_OK);
    CHECK(dps_registration_status(reg) == DPS_REGISTRATION_ASSIGNED);
    CHECK(dps_registration_issued_certificate(reg, 12345) == NULL);
    {
        size_t len = 0;
        EXPECT(dps_client_connection_string(client, reg, NULL, 0, &len), DPS_ERR_BUFFER_TOO_SMALL);
        char *cs = malloc(len + 1);
        EXPECT(dps_client_connection_string(client, reg, cs, len + 1, &len), DPS_OK);
        CHECK(strstr(cs, "DeviceId=dev-sym-device") != NULL);
        free(cs);
    }
    dps_registration_free(reg);
    reg = NULL;
    EXPECT(dps_client_lookup(client, &reg), DPS_OK);
    dps_registration_free(reg);
    reg = NULL;
    CHECK(events >= 4);
    dps_client_free(client);
    dps_config_free(cfg);

    /* Cancel during a 30 s Retry-After wait, then the same client again. */
    cfg = emulator_config("slow-dev", key);
    EXPECT(dps_client_new(cfg, &client, NULL), DPS_OK);
    EXPECT(dps_client_set_event_callback(client, note_wait, NULL), DPS_OK);
    {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, cancel_later, client) == 0);
        EXPECT(dps_client_register(client, &reg), DPS_ERR_CANCELLED);
        pthread_join(t, NULL);
        CHECK(dps_error_status(dps_client_last_error(client)) == DPS_ERR_CANCELLED);
        /* Step API on the same handle: the fault is used up, it completes. */
        uint32_t wait = 0;
        dps_status st;
        while ((st = dps_client_step(client, &wait, &reg)) == DPS_PENDING) {
            struct timespec ts = {wait / 1000, (long)(wait % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        EXPECT(st, DPS_OK);
        dps_registration_free(reg);
        reg = NULL;
    }
    dps_client_free(client);
    dps_config_free(cfg);

    /* Refused: the error object carries the detail and is freed. */
    cfg = emulator_config("dev-sym", "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=");
    {
        dps_error *err = NULL;
        EXPECT(dps_register(cfg, &reg, &err), DPS_ERR_UNAUTHORIZED);
        CHECK(reg == NULL && err != NULL);
        CHECK(dps_error_http_status(err) == 401 && dps_error_dps_code(err) == 401002);
        CHECK(dps_error_tracking_id(err) != NULL);
        dps_error_free(err);
    }
    dps_config_free(cfg);

    EXPECT(dps_set_log_callback(NULL, NULL, 0), DPS_OK);
    CHECK(log_lines > 0);
}

/* Endpoints are checked when set; messages never grow with the input; key
 * whitespace and repeated payload keys (issue 14, items 6 and 7). */
static void endpoints_and_messages(void) {
    dps_config *cfg = NULL;
    const char *bad[] = {"localhost:443:1", "::1", "[zz]:1", "localhost:+443", "a..b",
                         "-a.com", "999.1.1.1", "1.2.3", "localhost:0", "[::1", "a b"};
    const char *good[] = {"localhost", "localhost:443", "[::1]:443", "[::1]", "1.2.3.4:443",
                          "global.azure-devices-provisioning.net"};
    EXPECT(dps_config_new("0ne00000001", "dev", &cfg), DPS_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *m;
        EXPECT(dps_config_set_endpoint(cfg, bad[i]), DPS_ERR_INVALID_ENDPOINT);
        m = dps_error_message(dps_config_last_error(cfg));
        CHECK(m != NULL && strstr(m, "host:port") != NULL && strstr(m, "[::1]:443") != NULL &&
              strstr(m, "1.2.3.4:443") != NULL);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) EXPECT(dps_config_set_endpoint(cfg, good[i]), DPS_OK);

    /* A 1 MiB input is quoted in at most 128 characters (plus the sentence). */
    EXPECT(dps_config_set_endpoint(cfg, huge), DPS_ERR_INVALID_ENDPOINT);
    CHECK(dps_config_last_error(cfg) != NULL && strlen(dps_error_message(dps_config_last_error(cfg))) < 512);
    EXPECT(dps_config_set_api_version(cfg, huge), DPS_ERR_INVALID_ARGUMENT);
    CHECK(dps_config_last_error(cfg) != NULL && strlen(dps_error_message(dps_config_last_error(cfg))) < 512);
    EXPECT(dps_config_set_proxy(cfg, huge), DPS_ERR_INVALID_PROXY);
    CHECK(dps_config_last_error(cfg) != NULL && strlen(dps_error_message(dps_config_last_error(cfg))) < 512);
    EXPECT(dps_config_set_symmetric_key(cfg, huge), DPS_ERR_INVALID_KEY);
    CHECK(dps_config_last_error(cfg) != NULL && strlen(dps_error_message(dps_config_last_error(cfg))) < 512);
    EXPECT(dps_config_set_payload_json(cfg, huge), DPS_ERR_INVALID_PAYLOAD);
    CHECK(dps_config_last_error(cfg) != NULL && strlen(dps_error_message(dps_config_last_error(cfg))) < 512);
    EXPECT(dps_config_add_trusted_ca_pem(cfg, huge), DPS_ERR_INVALID_TRUST_ANCHOR);
    CHECK(dps_config_last_error(cfg) != NULL && strlen(dps_error_message(dps_config_last_error(cfg))) < 512);
    EXPECT(dps_config_set_x509_pem(cfg, huge, huge, NULL), DPS_ERR_INVALID_CERTIFICATE);
    CHECK(dps_config_last_error(cfg) != NULL && strlen(dps_error_message(dps_config_last_error(cfg))) < 512);
    EXPECT(dps_config_set_user_agent_suffix(cfg, huge), DPS_ERR_INVALID_ARGUMENT);
    CHECK(dps_config_last_error(cfg) != NULL && strlen(dps_error_message(dps_config_last_error(cfg))) < 512);
    /* Symmetric keys: surrounding ASCII whitespace trimmed, inner refused. */
    EXPECT(dps_config_set_symmetric_key(cfg, " AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n"), DPS_OK);
    EXPECT(dps_config_set_symmetric_key(cfg, "AAECAwQFBgcICQoL DA0ODxAREhMUFRYXGBkaGxwdHh8="), DPS_ERR_INVALID_KEY);
    CHECK(dps_config_last_error(cfg) != NULL && strstr(dps_error_message(dps_config_last_error(cfg)), "whitespace inside") != NULL);

    /* Payloads: a key repeated in one object is refused. */
    EXPECT(dps_config_set_payload_json(cfg, "{\"a\":1,\"b\":{\"c\":1,\"c\":2}}"), DPS_ERR_INVALID_PAYLOAD);
    {
        /* A well-formed object over 96 KB has its own status (issue 14 item 8). */
        static char big[100 * 1024];
        memset(big, 'x', sizeof big - 1);
        memcpy(big, "{\"a\":\"", 6);
        memcpy(big + sizeof big - 3, "\"}", 2);
        EXPECT(dps_config_set_payload_json(cfg, big), DPS_ERR_PAYLOAD_TOO_LARGE);
        CHECK(strstr(dps_error_message(dps_config_last_error(cfg)), "96 KB") != NULL);
        CHECK(dps_status_class(DPS_ERR_PAYLOAD_TOO_LARGE) == DPS_CLASS_USAGE);
    }
    CHECK(dps_config_last_error(cfg) != NULL && strstr(dps_error_message(dps_config_last_error(cfg)), "more than once") != NULL);
    EXPECT(dps_config_set_payload_json(cfg, "{\"a\":1,\"b\":{\"a\":2}}"), DPS_OK);
    dps_config_free(cfg);
}

int main(void) {
    huge = malloc(1 << 20);
    if (huge == NULL) return 2;
    memset(huge, 'A', (1 << 20) - 1);
    huge[(1 << 20) - 1] = '\0';
    misuse_without_network();
    endpoints_and_messages();
    if (getenv("DPS_ENDPOINT") != NULL) with_emulator();
    free(huge);
    if (failures != 0) {
        fprintf(stderr, "%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("ok %d checks\n", checks);
    return 0;
}

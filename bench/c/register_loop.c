/*
 * Benchmark driver: N device registrations through libdps.a, each one the
 * whole device-side job (config + credential + trust + register + free),
 * timed with the process CPU clock and the monotonic clock.
 *
 *   register_loop N   (environment as in c-examples/: DPS_ID_SCOPE,
 *   DPS_REGISTRATION_ID, DPS_SYMMETRIC_KEY | DPS_GROUP_KEY |
 *   DPS_CERT_FILE + DPS_KEY_FILE, DPS_ENDPOINT, DPS_CA_FILE, and optionally
 *   DPS_POLL_INTERVAL_MS: the poll interval when DPS sends no Retry-After)
 *
 * Prints one line per registration: "reg <cpu_us> <wall_us>". Exit 0 only if
 * every registration ended assigned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dps.h"

static long long now_us(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int register_once(void) {
    const char *scope = getenv("DPS_ID_SCOPE");
    const char *id = getenv("DPS_REGISTRATION_ID");
    const char *key = getenv("DPS_SYMMETRIC_KEY");
    const char *group_key = getenv("DPS_GROUP_KEY");
    const char *cert_file = getenv("DPS_CERT_FILE");
    const char *key_file = getenv("DPS_KEY_FILE");
    const char *endpoint = getenv("DPS_ENDPOINT");
    const char *ca_file = getenv("DPS_CA_FILE");
    const char *poll_ms = getenv("DPS_POLL_INTERVAL_MS");
    dps_config *config = NULL;
    dps_registration *reg = NULL;
    dps_error *err = NULL;
    int ok = 0;
    dps_status rc = dps_config_new(scope, id, &config);
    if (rc != DPS_OK) {
        fprintf(stderr, "dps_config_new: %s\n", dps_status_str(rc));
        return 0;
    }
    if (cert_file && key_file)
        rc = dps_config_set_x509_pem_files(config, cert_file, key_file, NULL);
    else if (key)
        rc = dps_config_set_symmetric_key(config, key);
    else
        rc = dps_config_set_group_key(config, group_key);
    if (rc == DPS_OK && endpoint) rc = dps_config_set_endpoint(config, endpoint);
    if (rc == DPS_OK && ca_file) rc = dps_config_add_trusted_ca_file(config, ca_file);
    if (rc == DPS_OK && poll_ms) rc = dps_config_set_poll_interval_ms(config, (uint32_t)atol(poll_ms));
    if (rc != DPS_OK) {
        fprintf(stderr, "configuration: %s\n", dps_error_message(dps_config_last_error(config)));
        goto done;
    }
    rc = dps_register(config, &reg, &err);
    if (rc != DPS_OK) {
        fprintf(stderr, "registration failed (%u): %s\n", rc, dps_error_message(err));
        goto done;
    }
    ok = dps_registration_status(reg) == DPS_REGISTRATION_ASSIGNED;
done:
    dps_registration_free(reg);
    dps_error_free(err);
    dps_config_free(config);
    return ok;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1;
    int failures = 0;
    if (!getenv("DPS_ID_SCOPE") ||
        !(getenv("DPS_SYMMETRIC_KEY") || getenv("DPS_GROUP_KEY") || getenv("DPS_CERT_FILE"))) {
        fprintf(stderr, "usage: register_loop N (see the comment at the top for the environment)\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        long long c0 = now_us(CLOCK_PROCESS_CPUTIME_ID), w0 = now_us(CLOCK_MONOTONIC);
        int ok = register_once();
        long long c1 = now_us(CLOCK_PROCESS_CPUTIME_ID), w1 = now_us(CLOCK_MONOTONIC);
        if (!ok) failures++;
        printf("reg %lld %lld\n", c1 - c0, w1 - w0);
    }
    return failures ? 1 : 0;
}

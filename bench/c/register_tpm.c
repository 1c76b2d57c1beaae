/* TPM registrations through the C ABI, for bench/tpm.py (CPU, wall, peak heap under valgrind
 * massif). `register_tpm [N]`: opens the TPM once (dps_config_set_tpm) and registers N times
 * (default 1) with one client, printing "cpu_ns wall_ns" of each registration on stderr.
 * Environment: DPS_ID_SCOPE, DPS_ENDPOINT, DPS_CA_FILE (the emulator's CA), DPS_TPM_TCTI.
 * Links a libdps.a built with --features tpm (target/release-hw). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

#include "dps.h"

static const char *need(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "register_tpm: %s is not set\n", name);
        exit(2);
    }
    return v;
}

static int fail(const char *what, dps_config *cfg) {
    fprintf(stderr, "register_tpm: %s: %s\n", what,
            cfg ? dps_error_message(dps_config_last_error(cfg)) : "");
    return 1;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1;
    if (n < 1) n = 1;
    dps_config *cfg = NULL;
    if (dps_config_new(need("DPS_ID_SCOPE"), NULL, &cfg) != DPS_OK) return fail("config", cfg);
    if (dps_config_set_endpoint(cfg, need("DPS_ENDPOINT")) != DPS_OK ||
        dps_config_set_default_roots(cfg, DPS_ROOTS_NONE) != DPS_OK ||
        dps_config_add_trusted_ca_file(cfg, need("DPS_CA_FILE")) != DPS_OK ||
        dps_config_set_timeout_ms(cfg, 30000) != DPS_OK ||
        dps_config_set_tpm(cfg, need("DPS_TPM_TCTI"), 0, 0, 0, 0) != DPS_OK)
        return fail("configuring", cfg);
    dps_client *client = NULL;
    dps_error *err = NULL;
    if (dps_client_new(cfg, &client, &err) != DPS_OK) {
        fprintf(stderr, "register_tpm: client: %s\n", dps_error_message(err));
        return 1;
    }
    for (int i = 0; i < n; i++) {
        dps_registration *reg = NULL;
        long long c0 = ns(CLOCK_PROCESS_CPUTIME_ID), w0 = ns(CLOCK_MONOTONIC);
        dps_status st = dps_client_register(client, &reg);
        long long c1 = ns(CLOCK_PROCESS_CPUTIME_ID), w1 = ns(CLOCK_MONOTONIC);
        if (st != DPS_OK) {
            fprintf(stderr, "register_tpm: %s: %s\n", dps_status_str(st),
                    dps_error_message(dps_client_last_error(client)));
            return 1;
        }
        fprintf(stderr, "%lld %lld\n", c1 - c0, w1 - w0);
        printf("%s %s\n", dps_registration_assigned_hub(reg), dps_registration_device_id(reg));
        dps_registration_free(reg);
    }
    dps_client_free(client);
    dps_config_free(cfg);
    return 0;
}

/*
 * Benchmark driver: K threads in one process, each registering distinct
 * devices of a symmetric-key enrollment group through libdps.a for S
 * seconds (config + group key + trust + dps_register + free per device, so
 * one new connection per registration).
 *
 *   register_threads K S PREFIX   (environment: DPS_ID_SCOPE, DPS_GROUP_KEY,
 *   DPS_ENDPOINT, DPS_CA_FILE, optionally DPS_POLL_INTERVAL_MS)
 *
 * Prints one JSON object: registrations, failures, wall_us, cpu_us.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dps.h"

static atomic_long done_count, failed_count;
static long long deadline_us;
static const char *prefix;

static long long now_us(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int register_device(const char *id) {
    const char *poll_ms = getenv("DPS_POLL_INTERVAL_MS");
    dps_config *config = NULL;
    dps_registration *reg = NULL;
    dps_error *err = NULL;
    int ok = 0;
    dps_status rc = dps_config_new(getenv("DPS_ID_SCOPE"), id, &config);
    if (rc == DPS_OK) rc = dps_config_set_group_key(config, getenv("DPS_GROUP_KEY"));
    if (rc == DPS_OK) rc = dps_config_set_endpoint(config, getenv("DPS_ENDPOINT"));
    if (rc == DPS_OK) rc = dps_config_add_trusted_ca_file(config, getenv("DPS_CA_FILE"));
    if (rc == DPS_OK && poll_ms) rc = dps_config_set_poll_interval_ms(config, (uint32_t)atol(poll_ms));
    if (rc == DPS_OK) rc = dps_register(config, &reg, &err);
    if (rc == DPS_OK) {
        ok = dps_registration_status(reg) == DPS_REGISTRATION_ASSIGNED;
    } else if (atomic_load(&failed_count) < 3) {
        fprintf(stderr, "register_threads: %s: %s\n", id,
                err ? dps_error_message(err) : (config && dps_config_last_error(config) ? dps_error_message(dps_config_last_error(config)) : dps_status_str(rc)));
    }
    dps_registration_free(reg);
    dps_error_free(err);
    dps_config_free(config);
    return ok;
}

static void *worker(void *arg) {
    long t = (long)arg;
    char id[128];
    for (long i = 0; now_us(CLOCK_MONOTONIC) < deadline_us; i++) {
        snprintf(id, sizeof id, "%s-%ld-%ld", prefix, t, i);
        if (register_device(id))
            atomic_fetch_add(&done_count, 1);
        else
            atomic_fetch_add(&failed_count, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4 || !getenv("DPS_ID_SCOPE") || !getenv("DPS_GROUP_KEY") || !getenv("DPS_ENDPOINT") ||
        !getenv("DPS_CA_FILE")) {
        fprintf(stderr, "usage: register_threads THREADS SECONDS PREFIX (see the comment at the top)\n");
        return 2;
    }
    int k = atoi(argv[1]);
    prefix = argv[3];
    pthread_t *threads = calloc((size_t)k, sizeof *threads);
    long long w0 = now_us(CLOCK_MONOTONIC), c0 = now_us(CLOCK_PROCESS_CPUTIME_ID);
    deadline_us = w0 + atoll(argv[2]) * 1000000LL;
    for (long t = 0; t < k; t++) pthread_create(&threads[t], NULL, worker, (void *)t);
    for (int t = 0; t < k; t++) pthread_join(threads[t], NULL);
    long long w1 = now_us(CLOCK_MONOTONIC), c1 = now_us(CLOCK_PROCESS_CPUTIME_ID);
    printf("{\"registrations\":%ld,\"failures\":%ld,\"wall_us\":%lld,\"cpu_us\":%lld}\n", atomic_load(&done_count),
           atomic_load(&failed_count), w1 - w0, c1 - c0);
    free(threads);
    return atomic_load(&failed_count) ? 1 : 0;
}

/*
 * The non-blocking step API in a firmware-style super-loop: each call to
 * dps_client_step does at most one HTTP exchange and says how long to wait;
 * the loop does other work meanwhile instead of blocking in the library.
 *
 *   DPS_ID_SCOPE=0ne00000001 DPS_REGISTRATION_ID=my-device \
 *   DPS_SYMMETRIC_KEY=... ./step_superloop
 *
 * Optional: DPS_ENDPOINT, DPS_CA_FILE.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dps.h"

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint32_t ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000u;
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    nanosleep(&ts, NULL);
}

/* Progress events arrive on this thread, inside dps_client_step. */
static void on_status(void *userdata, uint32_t event, uint32_t wait_ms, dps_status cause) {
    unsigned *events = userdata;
    (*events)++;
    fprintf(stderr, "event %u wait_ms=%u cause=%u\n", event, wait_ms, cause);
}

int main(void) {
    const char *scope = getenv("DPS_ID_SCOPE");
    const char *id = getenv("DPS_REGISTRATION_ID");
    const char *key = getenv("DPS_SYMMETRIC_KEY");
    const char *endpoint = getenv("DPS_ENDPOINT");
    const char *ca_file = getenv("DPS_CA_FILE");
    dps_config *config = NULL;
    dps_client *client = NULL;
    dps_registration *reg = NULL;
    unsigned events = 0, steps = 0;
    uint64_t next_step_at = 0;
    dps_status rc;
    int exit_code = 1;

    if (!scope || !id || !key) {
        fprintf(stderr, "set DPS_ID_SCOPE, DPS_REGISTRATION_ID and DPS_SYMMETRIC_KEY\n");
        return 2;
    }
    rc = dps_config_new(scope, id, &config);
    if (rc == DPS_OK) rc = dps_config_set_symmetric_key(config, key);
    if (rc == DPS_OK && endpoint) rc = dps_config_set_endpoint(config, endpoint);
    if (rc == DPS_OK && ca_file) rc = dps_config_add_trusted_ca_file(config, ca_file);
    if (rc == DPS_OK) rc = dps_client_new(config, &client, NULL);
    if (rc == DPS_OK) rc = dps_client_set_event_callback(client, on_status, &events);
    if (rc != DPS_OK) {
        /* A setter's error is kept by the config; dps_client_new's would go to its error_out. */
        const dps_error *setup_err = config ? dps_config_last_error(config) : NULL;
        fprintf(stderr, "setup: %s\n", setup_err ? dps_error_message(setup_err) : dps_status_str(rc));
        goto cleanup;
    }

    for (;;) {
        /* ... the rest of the firmware's super-loop work goes here ... */
        if (now_ms() >= next_step_at) {
            uint32_t wait_ms = 0;
            steps++;
            rc = dps_client_step(client, &wait_ms, &reg);
            if (rc == DPS_OK) break;
            if (rc != DPS_PENDING) {
                fprintf(stderr, "registration failed: %s\n", dps_error_message(dps_client_last_error(client)));
                goto cleanup;
            }
            next_step_at = now_ms() + wait_ms;
        }
        sleep_ms(1); /* stands in for the loop's other work */
    }
    printf("assigned hub=%s device=%s after %u steps and %u events\n", dps_registration_assigned_hub(reg),
           dps_registration_device_id(reg), steps, events);
    exit_code = 0;

cleanup:
    dps_registration_free(reg);
    dps_client_free(client);
    dps_config_free(config);
    return exit_code;
}

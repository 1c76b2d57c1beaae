/*
 * Register a device with a symmetric key: an individual enrollment's key
 * (DPS_SYMMETRIC_KEY) or an enrollment group key (DPS_GROUP_KEY, from which
 * the device key is derived).
 *
 *   DPS_ID_SCOPE=0ne00000001 DPS_REGISTRATION_ID=my-device \
 *   DPS_SYMMETRIC_KEY=... ./register_symmetric_key
 *
 * Optional: DPS_ENDPOINT (host[:port], default the global endpoint),
 * DPS_CA_FILE (an extra trusted root, e.g. the emulator's CA),
 * DPS_PAYLOAD (a JSON object for custom allocation).
 */
#include <stdio.h>
#include <stdlib.h>

#include "dps.h"

int main(void) {
    const char *scope = getenv("DPS_ID_SCOPE");
    const char *id = getenv("DPS_REGISTRATION_ID");
    const char *key = getenv("DPS_SYMMETRIC_KEY");
    const char *group_key = getenv("DPS_GROUP_KEY");
    const char *endpoint = getenv("DPS_ENDPOINT");
    const char *ca_file = getenv("DPS_CA_FILE");
    const char *payload = getenv("DPS_PAYLOAD");
    dps_config *config = NULL;
    dps_registration *reg = NULL;
    dps_error *err = NULL;
    dps_status rc;
    int exit_code = 1;

    if (!scope || !id || (!key && !group_key)) {
        fprintf(stderr, "set DPS_ID_SCOPE, DPS_REGISTRATION_ID and DPS_SYMMETRIC_KEY or DPS_GROUP_KEY\n");
        return 2;
    }
    rc = dps_config_new(scope, id, &config);
    if (rc != DPS_OK) {
        fprintf(stderr, "dps_config_new: %s\n", dps_status_str(rc));
        return 1;
    }
    /* Each setter validates its input at once; dps_config_last_error says why. */
    rc = key ? dps_config_set_symmetric_key(config, key) : dps_config_set_group_key(config, group_key);
    if (rc == DPS_OK && endpoint) rc = dps_config_set_endpoint(config, endpoint);
    if (rc == DPS_OK && ca_file) rc = dps_config_add_trusted_ca_file(config, ca_file);
    if (rc == DPS_OK && payload) rc = dps_config_set_payload_json(config, payload);
    if (rc != DPS_OK) {
        fprintf(stderr, "configuration: %s\n", dps_error_message(dps_config_last_error(config)));
        goto cleanup;
    }

    /* Blocks until assigned, failed, or the deadline (5 min by default). */
    rc = dps_register(config, &reg, &err);
    if (rc != DPS_OK) {
        fprintf(stderr, "registration failed (%u): %s\n", rc, dps_error_message(err));
        goto cleanup;
    }
    printf("assigned hub=%s device=%s substatus=%s\n", dps_registration_assigned_hub(reg),
           dps_registration_device_id(reg), dps_registration_substatus(reg));
    if (dps_registration_payload_json(reg)) printf("payload=%s\n", dps_registration_payload_json(reg));
    exit_code = 0;

cleanup:
    dps_registration_free(reg);
    dps_error_free(err);
    dps_config_free(config);
    return exit_code;
}

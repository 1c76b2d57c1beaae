/*
 * Register a device with a PKCS#12 (.pfx / .p12) file and its password, as
 * exported by Windows or `openssl pkcs12 -export`.
 *
 *   DPS_ID_SCOPE=0ne00000001 DPS_PFX_FILE=device.pfx DPS_PFX_PASSWORD=secret \
 *   ./register_pfx
 *
 * Optional: DPS_REGISTRATION_ID (default: the certificate's CN), DPS_ENDPOINT,
 * DPS_CA_FILE. A wrong password gives DPS_ERR_PKCS12_PASSWORD, before any
 * network traffic.
 */
#include <stdio.h>
#include <stdlib.h>

#include "dps.h"

int main(void) {
    const char *scope = getenv("DPS_ID_SCOPE");
    const char *id = getenv("DPS_REGISTRATION_ID");
    const char *pfx_file = getenv("DPS_PFX_FILE");
    const char *password = getenv("DPS_PFX_PASSWORD");
    const char *endpoint = getenv("DPS_ENDPOINT");
    const char *ca_file = getenv("DPS_CA_FILE");
    dps_config *config = NULL;
    dps_registration *reg = NULL;
    dps_error *err = NULL;
    dps_status rc;
    int exit_code = 1;

    if (!scope || !pfx_file) {
        fprintf(stderr, "set DPS_ID_SCOPE and DPS_PFX_FILE (and DPS_PFX_PASSWORD)\n");
        return 2;
    }
    rc = dps_config_new(scope, id, &config);
    if (rc != DPS_OK) {
        fprintf(stderr, "dps_config_new: %s\n", dps_status_str(rc));
        return 1;
    }
    rc = dps_config_set_pkcs12_file(config, pfx_file, password ? password : "");
    if (rc == DPS_OK && endpoint) rc = dps_config_set_endpoint(config, endpoint);
    if (rc == DPS_OK && ca_file) rc = dps_config_add_trusted_ca_file(config, ca_file);
    if (rc != DPS_OK) {
        fprintf(stderr, "configuration (%u): %s\n", rc, dps_error_message(dps_config_last_error(config)));
        exit_code = rc == DPS_ERR_PKCS12_PASSWORD ? 3 : 1;
        goto cleanup;
    }
    rc = dps_register(config, &reg, &err);
    if (rc != DPS_OK) {
        fprintf(stderr, "registration failed (%u): %s\n", rc, dps_error_message(err));
        goto cleanup;
    }
    printf("assigned hub=%s device=%s substatus=%s\n", dps_registration_assigned_hub(reg),
           dps_registration_device_id(reg), dps_registration_substatus(reg));
    exit_code = 0;

cleanup:
    dps_registration_free(reg);
    dps_error_free(err);
    dps_config_free(config);
    return exit_code;
}

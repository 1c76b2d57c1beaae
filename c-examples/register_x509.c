/*
 * Register a device with an X.509 certificate (mutual TLS). The certificate
 * file holds the device certificate first, then any intermediates: all are
 * sent in the TLS handshake, as DPS enrollment groups require.
 *
 *   DPS_ID_SCOPE=0ne00000001 DPS_CERT_FILE=device-chain.pem \
 *   DPS_KEY_FILE=device.key.pem ./register_x509
 *
 * The registration ID defaults to the certificate's subject CN (DPS requires
 * them to be equal); set DPS_REGISTRATION_ID to state it explicitly.
 * Optional: DPS_KEY_PASSWORD (encrypted PKCS#8 key), DPS_ENDPOINT, DPS_CA_FILE.
 */
#include <stdio.h>
#include <stdlib.h>

#include "dps.h"

int main(void) {
    const char *scope = getenv("DPS_ID_SCOPE");
    const char *id = getenv("DPS_REGISTRATION_ID"); /* may be NULL: CN is used */
    const char *cert_file = getenv("DPS_CERT_FILE");
    const char *key_file = getenv("DPS_KEY_FILE");
    const char *key_password = getenv("DPS_KEY_PASSWORD"); /* may be NULL */
    const char *endpoint = getenv("DPS_ENDPOINT");
    const char *ca_file = getenv("DPS_CA_FILE");
    dps_config *config = NULL;
    dps_client *client = NULL;
    dps_registration *reg = NULL;
    dps_status rc;
    int exit_code = 1;

    if (!scope || !cert_file || !key_file) {
        fprintf(stderr, "set DPS_ID_SCOPE, DPS_CERT_FILE and DPS_KEY_FILE\n");
        return 2;
    }
    rc = dps_config_new(scope, id, &config);
    if (rc != DPS_OK) {
        fprintf(stderr, "dps_config_new: %s\n", dps_status_str(rc));
        return 1;
    }
    /* The key is checked against the certificate here, before any traffic. */
    rc = dps_config_set_x509_pem_files(config, cert_file, key_file, key_password);
    if (rc == DPS_OK && endpoint) rc = dps_config_set_endpoint(config, endpoint);
    if (rc == DPS_OK && ca_file) rc = dps_config_add_trusted_ca_file(config, ca_file);
    if (rc != DPS_OK) {
        fprintf(stderr, "configuration: %s\n", dps_error_message(dps_config_last_error(config)));
        goto cleanup;
    }

    /* A client keeps the error detail (HTTP status, DPS errorCode, trackingId). */
    rc = dps_client_new(config, &client, NULL);
    if (rc != DPS_OK) {
        fprintf(stderr, "dps_client_new: %s\n", dps_status_str(rc));
        goto cleanup;
    }
    rc = dps_client_register(client, &reg);
    if (rc != DPS_OK) {
        const dps_error *e = dps_client_last_error(client);
        fprintf(stderr, "registration failed: %s\n", dps_error_message(e));
        if (dps_error_tracking_id(e)) fprintf(stderr, "trackingId for support: %s\n", dps_error_tracking_id(e));
        goto cleanup;
    }
    printf("assigned hub=%s device=%s substatus=%s\n", dps_registration_assigned_hub(reg),
           dps_registration_device_id(reg), dps_registration_substatus(reg));
    exit_code = 0;

cleanup:
    dps_registration_free(reg);
    dps_client_free(client);
    dps_config_free(config);
    return exit_code;
}

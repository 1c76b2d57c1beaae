/*
 * Register a device whose key stays in a PKCS#11 token (an HSM, a smart card,
 * SoftHSM, a TPM through tpm2-pkcs11). Either an X.509 key:
 *
 *   DPS_ID_SCOPE=0ne00000001 \
 *   DPS_PKCS11_URI='pkcs11:token=dps;object=device-key;type=private' \
 *   DPS_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so DPS_PKCS11_PIN=1234 \
 *   ./register_pkcs11
 *
 * with the certificate stored in the token beside the key, or in
 * DPS_CERT_FILE (the chain, leaf first); or a symmetric (SAS) key, a generic
 * secret in the token used with CKM_SHA256_HMAC:
 *
 *   DPS_ID_SCOPE=0ne00000001 DPS_REGISTRATION_ID=dev-1 \
 *   DPS_PKCS11_HMAC_URI='pkcs11:token=dps;object=sas-key' ... ./register_pkcs11
 *
 * which then also makes the IoT Hub SAS token for the assigned device, signed
 * by the token (a connection string cannot hold a key that is not in memory);
 * it prints its length only, as a token is a secret.
 * The module path and the PIN may be in the URI instead (module-path=,
 * pin-value= or pin-source=). Optional: DPS_ENDPOINT, DPS_CA_FILE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dps.h"

/* Reads a whole file into a NUL-terminated string (caller frees), or NULL. */
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!f) return NULL;
    for (;;) {
        size_t n;
        if (cap - len < 4096) {
            char *p = realloc(buf, cap + 8192);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
            cap += 8192;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

int main(void) {
    const char *scope = getenv("DPS_ID_SCOPE");
    const char *id = getenv("DPS_REGISTRATION_ID"); /* X.509: may be NULL, the CN is used */
    const char *uri = getenv("DPS_PKCS11_URI");
    const char *hmac_uri = getenv("DPS_PKCS11_HMAC_URI");
    const char *module = getenv("DPS_PKCS11_MODULE"); /* may be NULL: the URI's module-path */
    const char *pin = getenv("DPS_PKCS11_PIN");       /* may be NULL: the URI's, or none */
    const char *cert_file = getenv("DPS_CERT_FILE");  /* may be NULL: from the token */
    const char *endpoint = getenv("DPS_ENDPOINT");
    const char *ca_file = getenv("DPS_CA_FILE");
    char *chain = NULL;
    char token[1024];
    size_t token_len = 0;
    dps_config *config = NULL;
    dps_client *client = NULL;
    dps_registration *reg = NULL;
    dps_status rc;
    int exit_code = 1;

    if (!scope || (!uri == !hmac_uri)) {
        fprintf(stderr, "set DPS_ID_SCOPE and one of DPS_PKCS11_URI, DPS_PKCS11_HMAC_URI\n");
        return 2;
    }
    if (cert_file && !(chain = read_text(cert_file))) {
        fprintf(stderr, "cannot read %s\n", cert_file);
        return 2;
    }
    rc = dps_config_new(scope, id, &config);
    if (rc != DPS_OK) {
        fprintf(stderr, "dps_config_new: %s\n", dps_status_str(rc));
        free(chain);
        return 1;
    }
    /* Opens a session and logs in now: a wrong PIN, module or URI is reported here. The
     * library copies every string (the PIN into memory it zeroizes). */
    if (uri)
        rc = dps_config_set_pkcs11_x509(config, uri, chain, module, pin);
    else
        rc = dps_config_set_pkcs11_hmac(config, hmac_uri, module, pin);
    if (rc == DPS_OK && endpoint) rc = dps_config_set_endpoint(config, endpoint);
    if (rc == DPS_OK && ca_file) rc = dps_config_add_trusted_ca_file(config, ca_file);
    if (rc != DPS_OK) {
        fprintf(stderr, "configuration (%s): %s\n", dps_status_str(rc),
                dps_error_message(dps_config_last_error(config)));
        goto cleanup;
    }

    rc = dps_client_new(config, &client, NULL);
    if (rc != DPS_OK) {
        fprintf(stderr, "dps_client_new: %s\n", dps_status_str(rc));
        goto cleanup;
    }
    rc = dps_client_register(client, &reg);
    if (rc != DPS_OK) {
        const dps_error *e = dps_client_last_error(client);
        fprintf(stderr, "registration failed (%s): %s\n", dps_status_str(rc), dps_error_message(e));
        goto cleanup;
    }
    printf("assigned hub=%s device=%s substatus=%s\n", dps_registration_assigned_hub(reg),
           dps_registration_device_id(reg), dps_registration_substatus(reg));
    if (hmac_uri) {
        /* The next step, connecting to the hub, needs a SAS token the token signs. */
        rc = dps_client_iot_hub_sas_token(client, reg, (uint64_t)time(NULL) + 3600, token, sizeof token,
                                          &token_len);
        if (rc != DPS_OK) {
            fprintf(stderr, "IoT Hub SAS token: %s\n", dps_error_message(dps_client_last_error(client)));
            goto cleanup;
        }
        printf("iot hub token: %s, %u bytes\n",
               strncmp(token, "SharedAccessSignature sr=", 25) == 0 ? "SharedAccessSignature" : "?",
               (unsigned)token_len);
    }
    exit_code = 0;

cleanup:
    dps_registration_free(reg);
    dps_client_free(client);
    dps_config_free(config);
    free(chain);
    return exit_code;
}

/* One TPM registration through the C ABI, for bench/tpm.py (CPU, wall, peak heap under
 * valgrind massif). Environment: DPS_ID_SCOPE, DPS_ENDPOINT, DPS_CA_FILE (the emulator's CA),
 * DPS_TPM_TCTI. Links a libdps.a built with --features tpm (target/release-hw). */
#include <stdio.h>
#include <stdlib.h>

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

int main(void) {
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
    dps_registration *reg = NULL;
    dps_status st = dps_client_register(client, &reg);
    if (st != DPS_OK) {
        fprintf(stderr, "register_tpm: %s: %s\n", dps_status_str(st),
                dps_error_message(dps_client_last_error(client)));
        return 1;
    }
    printf("%s %s\n", dps_registration_assigned_hub(reg), dps_registration_device_id(reg));
    dps_registration_free(reg);
    dps_client_free(client);
    dps_config_free(cfg);
    return 0;
}

/*
 * Register a device with an X.509 certificate whose private key the library
 * (and this process) never sees: every signature is made by another process.
 * Here that process is `openssl pkeyutl`, started per signature with the key
 * file only it reads; a secure element, an HSM or a signing service over a
 * socket would take its place (only sign_digest() changes).
 *
 *   DPS_ID_SCOPE=0ne00000001 DPS_CERT_FILE=device-chain.pem \
 *   DPS_SIGNER_KEY_FILE=/secure/device.key.pem ./register_signer
 *
 * The library hashes; the callback receives the digest and the scheme
 * (DPS_SIG_*) and returns the signature: DER or raw r||s for ECDSA, the
 * modulus-length signature for RSA. Before any traffic the library checks
 * one signature against the certificate, so a signer holding another key is
 * reported by dps_config_set_x509_signer (DPS_ERR_KEY_MISMATCH).
 * Optional: DPS_REGISTRATION_ID (default: the certificate's CN), DPS_ENDPOINT,
 * DPS_CA_FILE, DPS_OPENSSL (default: openssl from PATH).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dps.h"

struct signer {
    const char *openssl; /* program to run */
    const char *key_file; /* read by the signing process only */
};

/* Writes all of buf to fd; 0 on success. */
static int write_all(int fd, const unsigned char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * The dps_sign_callback: runs `openssl pkeyutl -sign` with the digest on its
 * stdin and reads the signature from its stdout. Returns 0 on success; any
 * other value becomes DPS_ERR_SIGNER_FAILED in the library.
 */
static int sign_digest(void *userdata, uint32_t scheme, const uint8_t *digest, size_t digest_len,
                       uint8_t *sig, size_t sig_cap, size_t *sig_len) {
    const struct signer *s = userdata;
    const char *argv[16];
    int n = 0, in[2], out[2], status = 0;
    size_t got = 0;
    pid_t pid;

    argv[n++] = s->openssl;
    argv[n++] = "pkeyutl";
    argv[n++] = "-sign";
    argv[n++] = "-inkey";
    argv[n++] = s->key_file;
    argv[n++] = "-pkeyopt";
    switch (scheme) {
    case DPS_SIG_ECDSA_P256_SHA256:
    case DPS_SIG_RSA_PKCS1_SHA256: /* pkeyutl adds the DigestInfo prefix */
        argv[n++] = "digest:sha256";
        break;
    case DPS_SIG_ECDSA_P384_SHA384:
        argv[n++] = "digest:sha384";
        break;
    case DPS_SIG_RSA_PSS_SHA256:
        argv[n++] = "digest:sha256";
        argv[n++] = "-pkeyopt";
        argv[n++] = "rsa_padding_mode:pss";
        argv[n++] = "-pkeyopt";
        argv[n++] = "rsa_pss_saltlen:32";
        argv[n++] = "-pkeyopt";
        argv[n++] = "rsa_mgf1_md:sha256";
        break;
    default:
        return 10; /* a scheme this signer does not implement */
    }
    argv[n] = NULL;

    if (pipe(in) != 0) return 11;
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return 11;
    }
    pid = fork();
    if (pid < 0) {
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        return 12;
    }
    if (pid == 0) { /* the signing process */
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    /* The digest is at most 48 bytes: it fits the pipe, no deadlock. */
    if (write_all(in[1], digest, digest_len) != 0) status = -1;
    close(in[1]);
    for (;;) {
        ssize_t r;
        if (got == sig_cap) { /* longer than any signature: refuse */
            status = -1;
            break;
        }
        r = read(out[0], sig + got, sig_cap - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(out[0]);
    {
        int wstatus = 0;
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) return 13;
    }
    if (status != 0 || got == 0) return 14;
    *sig_len = got;
    return 0;
}

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
    const char *id = getenv("DPS_REGISTRATION_ID"); /* may be NULL: CN is used */
    const char *cert_file = getenv("DPS_CERT_FILE");
    const char *endpoint = getenv("DPS_ENDPOINT");
    const char *ca_file = getenv("DPS_CA_FILE");
    struct signer signer;
    char *chain = NULL;
    dps_config *config = NULL;
    dps_client *client = NULL;
    dps_registration *reg = NULL;
    dps_status rc;
    int exit_code = 1;

    /* A signing process that dies early must not kill us through a write to its pipe. */
    signal(SIGPIPE, SIG_IGN);
    signer.key_file = getenv("DPS_SIGNER_KEY_FILE");
    signer.openssl = getenv("DPS_OPENSSL") ? getenv("DPS_OPENSSL") : "openssl";
    if (!scope || !cert_file || !signer.key_file) {
        fprintf(stderr, "set DPS_ID_SCOPE, DPS_CERT_FILE and DPS_SIGNER_KEY_FILE\n");
        return 2;
    }
    chain = read_text(cert_file);
    if (!chain) {
        fprintf(stderr, "cannot read %s\n", cert_file);
        return 2;
    }
    rc = dps_config_new(scope, id, &config);
    if (rc != DPS_OK) {
        fprintf(stderr, "dps_config_new: %s\n", dps_status_str(rc));
        free(chain);
        return 1;
    }
    /* The library copies the chain; `signer` must outlive the config and its clients. */
    rc = dps_config_set_x509_signer(config, chain, sign_digest, &signer);
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
    exit_code = 0;

cleanup:
    dps_registration_free(reg);
    dps_client_free(client);
    dps_config_free(config);
    free(chain);
    return exit_code;
}

/* tls.c - see tls.h. */
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>

static char tls_error[512];

static int fail(const char **error_r, const char *what, const char *path)
{
	unsigned long err = ERR_get_error();
	char detail[256];
	ERR_error_string_n(err, detail, sizeof(detail));
	snprintf(tls_error, sizeof(tls_error), "tls: %s %s: %s", what, path, detail);
	ERR_clear_error();
	*error_r = tls_error;
	return -1;
}

int tls_server_context_create(const char *cert_path, const char *key_path, SSL_CTX **ctx_r,
			      const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return fail(error_r, "cannot create context for", cert_path);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		SSL_CTX_free(ctx);
		return fail(error_r, "cannot load certificate (tls_cert)", cert_path);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		SSL_CTX_free(ctx);
		return fail(error_r, "cannot load private key (tls_key)", key_path);
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		SSL_CTX_free(ctx);
		return fail(error_r, "private key does not match the certificate", cert_path);
	}
	*ctx_r = ctx;
	return 0;
}

void tls_context_destroy(SSL_CTX **ctx)
{
	if (*ctx != NULL)
		SSL_CTX_free(*ctx);
	*ctx = NULL;
}

/* tls.h - the server-side TLS context shared by every TLS listener and
 * STARTTLS.  OpenSSL 3; TLS 1.2 and newer; buffers released while idle so
 * an idle TLS session does not hold 2 x 16 KB of record buffers. */
#ifndef TLS_H
#define TLS_H

typedef struct ssl_ctx_st SSL_CTX;

int tls_server_context_create(const char *cert_path, const char *key_path, SSL_CTX **ctx_r,
			      const char **error_r);
void tls_context_destroy(SSL_CTX **ctx);

#endif

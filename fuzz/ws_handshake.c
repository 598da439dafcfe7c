/*
** libFuzzer harness: the WebSocket opening handshake codec
** (src/ws_handshake.c): Sec-WebSocket-Key checking, Sec-WebSocket-Accept,
** and the permessage-deflate offer/answer.
**
** Input: two policy bytes, then a header value.
**   byte 0: bit 0 no policy (accept as offered); bit 1 the server insists
**     on server_no_context_takeover; bit 2 on client_no_context_takeover;
**     bits 3-6 its server_max_window_bits (8..15; 0 and others: 15).
**   byte 1: bits 0-3 its client_max_window_bits (same).
** The value is taken as a Sec-WebSocket-Extensions offer and as a
** Sec-WebSocket-Key, each from a buffer of its exact size.  Checked: the
** answer fits its buffer, is NUL-terminated and is itself a valid offer
** that agrees to the same; the agreed parameters are in range and honour
** the policy; the key check matches RFC 6455 4.2.1 (base64 of 16 bytes,
** spaces and tabs around it ignored); the accept value is 28 base64
** characters.
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/ws.h"

#define FAIL(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), abort())

static const char b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


static int isb64 (char c) {
  return c != '\0' && strchr(b64, c) != NULL;
}


/* RFC 6455 4.2.1 item 5, as owl_ws_key_valid documents it */
static int ref_key (const char *k, size_t n) {
  while (n > 0 && (*k == ' ' || *k == '\t'))
    k++, n--;
  while (n > 0 && (k[n - 1] == ' ' || k[n - 1] == '\t'))
    n--;
  if (n != 24 || k[22] != '=' || k[23] != '=')
    return 0;
  for (size_t i = 0; i < 22; i++)
    if (!isb64(k[i]))
      return 0;
  return 1;
}


static int bits (unsigned v) {
  return v >= 8 && v <= 15 ? (int)v : 0;
}


static void check_agreed (const owl_ws_deflate_t *pol, const owl_ws_deflate_t *a) {
  if (!a->enabled)
    FAIL("agreed but not enabled");
  if (a->server_max_window_bits < 8 || a->server_max_window_bits > 15 ||
      a->client_max_window_bits < 8 || a->client_max_window_bits > 15)
    FAIL("window bits %d/%d", a->server_max_window_bits,
         a->client_max_window_bits);
  if (pol == NULL)
    return;
  if ((pol->server_no_context_takeover && !a->server_no_context_takeover) ||
      (pol->client_no_context_takeover && !a->client_no_context_takeover))
    FAIL("the policy's no_context_takeover was dropped");
  if (pol->server_max_window_bits &&
      a->server_max_window_bits > pol->server_max_window_bits)
    FAIL("server_max_window_bits %d over the policy's %d",
         a->server_max_window_bits, pol->server_max_window_bits);
}


int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  owl_ws_deflate_t policy, agreed, again;
  const owl_ws_deflate_t *pol = NULL;
  char *v, *resp, *resp2, accept[OWL_WS_ACCEPT_SIZE];
  int r, r2;
  if (size < 2)
    return 0;
  memset(&policy, 0, sizeof policy);
  if (!(data[0] & 1)) {
    policy.enabled = 1;
    policy.server_no_context_takeover = (data[0] >> 1) & 1;
    policy.client_no_context_takeover = (data[0] >> 2) & 1;
    policy.server_max_window_bits = bits((data[0] >> 3) & 15);
    policy.client_max_window_bits = bits(data[1] & 15);
    pol = &policy;
  }
  size -= 2;
  v = malloc(size ? size : 1);
  memcpy(v, data + 2, size);

  /* the answer, in a buffer of the least size allowed */
  resp = malloc(OWL_WS_EXT_SIZE);
  memset(&agreed, 0, sizeof agreed);
  r = owl_ws_deflate_negotiate(pol, v, size, &agreed, resp, OWL_WS_EXT_SIZE);
  if (r < 0 || r >= OWL_WS_EXT_SIZE)
    FAIL("negotiate returned %d", r);
  if (r > 0) {
    if (strlen(resp) != (size_t)r || memcmp(resp, "permessage-deflate", 18) != 0)
      FAIL("an answer of %d bytes: \"%s\"", r, resp);
    check_agreed(pol, &agreed);
    /* what we answered is an offer we would take, with the same terms */
    resp2 = malloc(OWL_WS_EXT_SIZE);
    r2 = owl_ws_deflate_negotiate(NULL, resp, (size_t)r, &again, resp2,
                                  OWL_WS_EXT_SIZE);
    if (r2 <= 0)
      FAIL("the answer \"%s\" is no valid offer", resp);
    if (again.server_no_context_takeover != agreed.server_no_context_takeover ||
        again.client_no_context_takeover != agreed.client_no_context_takeover ||
        (strstr(resp, "client_max_window_bits") != NULL &&
         again.client_max_window_bits != agreed.client_max_window_bits) ||
        (strstr(resp, "server_max_window_bits") != NULL &&
         again.server_max_window_bits != agreed.server_max_window_bits))
      FAIL("the answer \"%s\" read back differs", resp);
    free(resp2);
  }
  if (owl_ws_deflate_negotiate(pol, v, size, &again, resp,
                               OWL_WS_EXT_SIZE - 1) != OWL_WS_ENOBUFS)
    FAIL("negotiate into too small a buffer");
  free(resp);

  /* the key */
  if (owl_ws_key_valid(v, size) != ref_key(v, size))
    FAIL("owl_ws_key_valid says %d", owl_ws_key_valid(v, size));
  owl_ws_accept(v, size, accept);
  if (strlen(accept) != 28 || accept[27] != '=')
    FAIL("accept value \"%s\"", accept);
  for (int i = 0; i < 27; i++)
    if (!isb64(accept[i]))
      FAIL("accept value \"%s\"", accept);

  free(v);
  return 0;
}

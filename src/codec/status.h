/*
** Reason phrases and the Date clock (status.c): a leaf.
*/

#ifndef OWL_STATUS_H
#define OWL_STATUS_H

#include <stdint.h>

/* The reason phrase of a status, "" for a code without one. */
const char *owl_reason (int status);
/* The current date as an IMF-fixdate (29 bytes, NUL-terminated); *sec,
** when not NULL, gets the second it names. */
const char *owl_http_date (uint64_t *sec);

#endif

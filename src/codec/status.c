/*
** HTTP's status reason phrases and the Date header's clock: a leaf, no
** libuv and no Lua.
*/

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "codec/status.h"


/* The reason phrase of a status, "" for a code without one.  The cases are
** made from lua/owin/host/status.lua, the table the pure-Lua hosts use. */
const char *owl_reason (int status) {
  switch (status) {
#include "reasons.h"
    default: return "";
  }
}


static char date[32];                   /* "Sun, 06 Nov 1994 08:49:37 GMT" */
static uint64_t date_sec = UINT64_MAX;


/* The current IMF-fixdate, formatted at most once a second; *sec (if not
** NULL) is the second it names, which changes when the text does. */
const char *owl_http_date (uint64_t *sec) {
  static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
  static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  time_t now = time(NULL);
  if ((uint64_t)now != date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(date, sizeof date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    date_sec = (uint64_t)now;
  }
  if (sec != NULL)
    *sec = date_sec;
  return date;
}

#include "core.h"

#include <stdarg.h>
#include <string.h>

int err_set(Err *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int err_wrap(Err *err, const char *fmt, ...) {
    if (!err) return ERR_INVALID;
    char prefix[128], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %.380s", prefix, old);
    return err->code ? err->code : ERR_INVALID;
}

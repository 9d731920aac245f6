/* frame.c -- refcounted encoded frames, shared by every send queue they are put on. */
#include "gw.h"

#include <stdlib.h>

frame *frame_encode(const msg *m, codec c) {
    frame *f = calloc(1, sizeof(*f));
    if (!f) return NULL;
    f->buf = c == CODEC_JSON ? msg_encode_json(m, LWS_PRE, &f->len)
                             : msg_encode_msgpack(m, LWS_PRE, &f->len);
    if (!f->buf) {
        free(f);
        return NULL;
    }
    f->refs = 1;
    return f;
}

frame *frame_ref(frame *f) {
    f->refs++;
    return f;
}

void frame_unref(frame *f) {
    if (!f || --f->refs) return;
    free(f->buf);
    free(f);
}

/* Returns the frame for codec c, encoding it on first use; the cache keeps its reference. */
frame *frame_cache_get(frame_cache *fc, codec c) {
    if (!fc->f[c]) fc->f[c] = frame_encode(fc->m, c);
    return fc->f[c];
}

frame *frame_cache_view(frame_cache *fc, codec c, int desk) {
    if (desk || !msg_type_is_internal(fc->m->type)) return frame_cache_get(fc, c);
    if (!fc->has_cust) {
        msg_customer_view(&fc->cust, fc->m);
        fc->has_cust = 1;
    }
    if (!fc->cf[c]) fc->cf[c] = frame_encode(&fc->cust, c);
    return fc->cf[c];
}

void frame_cache_release(frame_cache *fc) {
    for (int i = 0; i < 2; i++) {
        frame_unref(fc->f[i]);
        frame_unref(fc->cf[i]);
        fc->f[i] = fc->cf[i] = NULL;
    }
    fc->has_cust = 0; /* cust owns nothing */
}

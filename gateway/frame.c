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

void frame_cache_release(frame_cache *fc) {
    frame_unref(fc->f[0]);
    frame_unref(fc->f[1]);
    fc->f[0] = fc->f[1] = NULL;
}

/* Loss curve as a self-contained SVG (opens in any browser). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

void history_add(LossHistory *h, int step, float loss, int is_val) {
    int *n = is_val ? &h->nval : &h->n, *cap = is_val ? &h->capval : &h->cap;
    int **steps = is_val ? &h->val_step : &h->step;
    float **losses = is_val ? &h->val_loss : &h->loss;
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 256;
        int *s = realloc(*steps, (size_t)nc * sizeof **steps);
        float *l = realloc(*losses, (size_t)nc * sizeof **losses);
        if (!s || !l) {
            free(s == *steps ? NULL : s);
            return; /* a plot point lost to OOM is not worth failing the run */
        }
        *steps = s;
        *losses = l;
        *cap = nc;
    }
    (*steps)[*n] = step;
    (*losses)[*n] = loss;
    (*n)++;
}

void history_free(LossHistory *h) {
    free(h->step);
    free(h->loss);
    free(h->val_step);
    free(h->val_loss);
    memset(h, 0, sizeof *h);
}

typedef struct {
    char *s;
    size_t n, cap;
} Buf;

static void bprintf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void bprintf(Buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *s = realloc(b->s, nc);
        if (!s) return;
        b->s = s;
        b->cap = nc;
    }
}

int plot_loss_svg(const LossHistory *h, const char *path, Err *err) {
    const double W = 800, H = 480, x0 = 70, y0 = 30, pw = 700, ph = 390;
    int smax = 1;
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < h->n; i++) {
        smax = h->step[i] > smax ? h->step[i] : smax;
        if (isfinite(h->loss[i])) lo = fminf(lo, h->loss[i]), hi = fmaxf(hi, h->loss[i]);
    }
    for (int i = 0; i < h->nval; i++) {
        smax = h->val_step[i] > smax ? h->val_step[i] : smax;
        if (isfinite(h->val_loss[i])) lo = fminf(lo, h->val_loss[i]), hi = fmaxf(hi, h->val_loss[i]);
    }
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-3f) hi = lo + 1e-3f;
    Buf b = {0};
    bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    bprintf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    bprintf(&b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n", x0, y0, pw, ph);
    for (int k = 0; k <= 5; k++) {
        double v = lo + (hi - lo) * k / 5.0, y = y0 + ph - ph * k / 5.0;
        bprintf(&b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", x0, x0 + pw, y, y);
        bprintf(&b, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n", x0 - 6, y + 4, v);
        double sx = x0 + pw * k / 5.0;
        bprintf(&b, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n", sx, y0 + ph + 18, (int)(smax * k / 5.0));
    }
    bprintf(&b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step</text>\n", x0 + pw / 2, H - 8);
    bprintf(&b, "<text x=\"%.0f\" y=\"18\">loss (blue: train, orange: validation)</text>\n", x0);
    const char *colors[2] = {"#1f77b4", "#ff7f0e"};
    for (int series = 0; series < 2; series++) {
        int n = series ? h->nval : h->n;
        const int *s = series ? h->val_step : h->step;
        const float *l = series ? h->val_loss : h->loss;
        if (n == 0) continue;
        bprintf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colors[series]);
        /* at most ~2000 points: plenty for 700 pixels */
        int stride = n > 2000 ? n / 2000 : 1;
        for (int i = 0; i < n; i += stride) {
            if (!isfinite(l[i])) continue;
            double x = x0 + pw * s[i] / smax, y = y0 + ph - ph * (l[i] - lo) / (hi - lo);
            bprintf(&b, "%.1f,%.1f ", x, y);
        }
        bprintf(&b, "\"/>\n");
        if (series)
            for (int i = 0; i < n; i++)
                if (isfinite(l[i]))
                    bprintf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x0 + pw * s[i] / smax,
                            y0 + ph - ph * (l[i] - lo) / (hi - lo), colors[1]);
    }
    bprintf(&b, "</svg>\n");
    if (!b.s) return err_set(err, ERR_NOMEM, "out of memory drawing the loss plot");
    int rc = file_write_atomic(path, b.s, b.n, err);
    free(b.s);
    return rc;
}

/* Expert parallelism: each rank of an ep group holds E/ep experts; a layer's
 * token rows (already sorted by expert, see ffn.c) travel to the rank that
 * holds their expert with one all-to-all, are regrouped per local expert so
 * each expert runs as one GEMM, and come back the same way.
 *
 * Layouts, for a rank with local experts 0..El-1 and peers 0..ep-1:
 *   sorted  (N*k, C): this rank's rows by global expert (ffn.c's order)
 *   arrival (R, C):   rows as received: by sender, within a sender by expert
 *   grouped (R, C):   by local expert, within an expert by sender */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

void moe_ep_free(MoeExchange *x) {
    free(x->recv_cnt);
    memset(x, 0, sizeof *x);
}

int moe_ep_plan(Model *m, int l, MoeExchange *x, Err *err) {
    const int ep = m->shard.ep_size, E = m->cfg.n_expert, El = E / ep;
    const int32_t *off = m->act.moe_off[l];
    memset(x, 0, sizeof *x);
    x->ep = ep;
    x->El = El;
    x->recv_cnt = calloc((size_t)ep * El, sizeof *x->recv_cnt);
    float *sc = malloc((size_t)ep * El * 2 * sizeof(float));
    int *cnt = malloc((size_t)ep * 4 * sizeof(int));
    if (!x->recv_cnt || !sc || !cnt) {
        free(sc);
        free(cnt);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    /* rows this rank sends for each global expert, exchanged as counts */
    for (int e = 0; e < E; e++) sc[e] = (float)(off[e + 1] - off[e]);
    int *c_send = cnt, *d_send = cnt + ep, *c_recv = cnt + 2 * ep, *d_recv = cnt + 3 * ep;
    for (int r = 0; r < ep; r++) {
        c_send[r] = c_recv[r] = El;
        d_send[r] = d_recv[r] = r * El;
    }
    float *rc_f = sc + (size_t)ep * El;
    int rc = m->shard.ep->ops->alltoallv(m->shard.ep, sc, c_send, d_send, rc_f, c_recv, d_recv, err);
    if (!rc) {
        for (int i = 0; i < ep * El; i++) x->recv_cnt[i] = (int)rc_f[i];
        for (int r = 0; r < ep; r++) {
            x->send_rows[r] = off[(r + 1) * El] - off[r * El];
            x->send_off[r] = off[r * El];
            int n = 0;
            for (int j = 0; j < El; j++) n += x->recv_cnt[r * El + j];
            x->recv_rows[r] = n;
            x->recv_off[r] = r ? x->recv_off[r - 1] + x->recv_rows[r - 1] : 0;
        }
        x->R = x->recv_off[ep - 1] + x->recv_rows[ep - 1];
        x->goff[0] = 0;
        for (int j = 0; j < El; j++) {
            int n = 0;
            for (int r = 0; r < ep; r++) n += x->recv_cnt[r * El + j];
            x->goff[j + 1] = x->goff[j] + n;
        }
    }
    free(sc);
    free(cnt);
    return rc;
}

/* Move rows between the arrival and grouped layouts. */
static void regroup(const MoeExchange *x, float *arrival, float *grouped, int C, int to_grouped) {
    for (int j = 0; j < x->El; j++) {
        int g = x->goff[j];
        for (int r = 0; r < x->ep; r++) {
            int a = x->recv_off[r];
            for (int jj = 0; jj < j; jj++) a += x->recv_cnt[r * x->El + jj];
            int n = x->recv_cnt[r * x->El + j];
            if (to_grouped)
                memcpy(grouped + (size_t)g * C, arrival + (size_t)a * C, (size_t)n * C * sizeof(float));
            else
                memcpy(arrival + (size_t)a * C, grouped + (size_t)g * C, (size_t)n * C * sizeof(float));
            g += n;
        }
    }
}

static int exchange(Model *m, const MoeExchange *x, const float *send, float *recv, int forward, Err *err) {
    const int ep = x->ep, C = m->cfg.d_model;
    int sc[64], sd[64], rcn[64], rd[64];
    for (int r = 0; r < ep; r++) {
        int s_rows = forward ? x->send_rows[r] : x->recv_rows[r], s_off = forward ? x->send_off[r] : x->recv_off[r];
        int r_rows = forward ? x->recv_rows[r] : x->send_rows[r], r_off = forward ? x->recv_off[r] : x->send_off[r];
        sc[r] = s_rows * C;
        sd[r] = s_off * C;
        rcn[r] = r_rows * C;
        rd[r] = r_off * C;
    }
    return m->shard.ep->ops->alltoallv(m->shard.ep, send, sc, sd, recv, rcn, rd, err);
}

int moe_ep_dispatch(Model *m, const MoeExchange *x, const float *sorted, float *grouped, Err *err) {
    int rc = exchange(m, x, sorted, m->act.moe_recv, 1, err);
    if (rc) return rc;
    regroup(x, m->act.moe_recv, grouped, m->cfg.d_model, 1);
    return 0;
}

int moe_ep_combine(Model *m, const MoeExchange *x, float *grouped, float *sorted, Err *err) {
    regroup(x, m->act.moe_recv, grouped, m->cfg.d_model, 0);
    return exchange(m, x, m->act.moe_recv, sorted, 0, err);
}

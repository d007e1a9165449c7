/* The planner and the engine agree: training-state bytes equal what
 * model_create allocates (n_params floats for each of weights, grads, Adam m
 * and v), activations equal the engine's own plan, and the sharded registry
 * of `train --dry-run` partitions every tensor exactly (Megatron-LM splits:
 * Shoeybi et al. 2019 Sec. 3 for column/row parallel layers, Narayanan et al.
 * 2021 for pipeline stages, Lepikhin et al. 2020 / Megatron-LM for experts). */
#include "model/model.h"
#include "plan/plan.h"
#include "dist/zero.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static Config preset(const char *name) {
    Config c;
    Err err = {0};
    if (config_preset(&c, name, &err)) {
        fprintf(stderr, "preset %s: %s\n", name, err.msg);
        exit(1);
    }
    return c;
}

/* One process, fp32, the engine's allocation: byte for byte. */
static void test_engine_allocation(void) {
    const char *names[] = {"gpt2-tiny", "llama-tiny", "moe-tiny", "gpt2-mini"};
    for (int i = 0; i < 4; i++) {
        Config c = preset(names[i]);
        Model m;
        Err err = {0};
        if (model_create(&m, &c, 1, &err)) {
            CHECK(0, "%s: model_create: %s", names[i], err.msg);
            continue;
        }
        const int B = 2, T = 64;
        CHECK(model_plan_activations(&m, B, T, 1, &err) == 0, "%s: %s", names[i], err.msg);
        PlanLayout l;
        plan_layout_default(&l); /* fp32, one device */
        PlanRun r = {.seq = T, .micro_batch = B, .global_batch = B};
        PlanMemory pm;
        CHECK(plan_memory(&c, &l, &r, 1, &pm, NULL, &err) == 0, "%s: %s", names[i], err.msg);
        size_t buf = m.n_params * sizeof(float); /* what model_create allocates per buffer */
        CHECK(m.params && m.grads && m.adam_m && m.adam_v, "%s: training buffers allocated", names[i]);
        CHECK(pm.weights == (double)buf, "%s: weights %.0f vs engine %zu", names[i], pm.weights, buf);
        CHECK(pm.grads == (double)buf, "%s: grads %.0f vs engine %zu", names[i], pm.grads, buf);
        CHECK(pm.optimizer == 2.0 * (double)buf, "%s: optimizer %.0f vs engine %zu", names[i], pm.optimizer, 2 * buf);
        size_t act = m.act.n_floats * sizeof(float);
        CHECK(pm.activations == (double)act, "%s: activations %.0f vs engine %zu", names[i], pm.activations, act);
        CHECK(pm.total == pm.weights + pm.grads + pm.optimizer + pm.activations, "%s: total", names[i]);
        /* the same through the whole plan on `cpu` (no measurement needed for memory) */
        CHECK(m.n_params == config_param_count(&c), "%s: registry count", names[i]);
        model_free(&m);
    }
}

/* One process, bf16 (jarip's CPU mixed precision), the engine's allocation:
 * byte for byte. The state stays float32 (the master weights are the only
 * copy), the activations are the float32 ones, and the conversion scratch
 * is what model_set_precision + model_plan_activations allocate; a training
 * step grows none of it, and a dense model's step uses all of it (an MoE's
 * experts may see fewer rows than the bound). The planner's side needs no
 * bf16 hardware; the engine's is skipped without it. */
static void test_engine_allocation_bf16(void) {
    const char *names[] = {"gpt2-tiny", "llama-tiny", "moe-tiny", "gpt2-mini"};
    if (!gemm_bf16_available()) printf("test_plan_shard: bf16 engine allocation skipped: no native bf16 (oneDNN %s)\n",
                                       gemm_isa_name());
    for (int i = 0; i < 4; i++) {
        Config c = preset(names[i]);
        const int B = 2, T = 64;
        PlanLayout l;
        plan_layout_default(&l);
        l.precision = PREC_BF16;
        PlanRun r = {.seq = T, .micro_batch = B, .global_batch = B};
        PlanMemory pm;
        Err err = {0};
        CHECK(plan_memory(&c, &l, &r, 1, &pm, NULL, &err) == 0, "%s: %s", names[i], err.msg);
        const double buf = (double)config_param_count(&c) * sizeof(float);
        CHECK(pm.weights == buf && pm.grads == buf && pm.optimizer == 2 * buf,
              "%s bf16: state %.0f/%.0f/%.0f vs the engine's float32 buffers %.0f each", names[i], pm.weights, pm.grads,
              pm.optimizer, buf);
        CHECK(pm.scratch > 0 && pm.total == pm.weights + pm.grads + pm.optimizer + pm.activations + pm.scratch,
              "%s bf16: scratch %.0f, total", names[i], pm.scratch);
        if (!gemm_bf16_available()) continue;
        Model m;
        if (model_create(&m, &c, 1, &err)) {
            CHECK(0, "%s: model_create: %s", names[i], err.msg);
            continue;
        }
        model_init_weights(&m, 5);
        CHECK(model_set_precision(&m, PRECISION_BF16, &err) == 0, "%s: %s", names[i], err.msg);
        CHECK(model_plan_activations(&m, B, T, 1, &err) == 0, "%s: %s", names[i], err.msg);
        const size_t act = m.act.n_floats * sizeof(float), scratch = model_bf16_scratch_allocated(&m, NULL);
        CHECK(pm.activations == (double)act, "%s bf16: activations %.0f vs engine %zu", names[i], pm.activations, act);
        CHECK(pm.scratch == (double)scratch, "%s bf16: scratch %.0f vs engine %zu", names[i], pm.scratch, scratch);
        int32_t tok[128], tgt[128];
        for (int j = 0; j < B * T; j++) tok[j] = (j * 31 + 7) % c.vocab_size, tgt[j] = (j * 17 + 3) % c.vocab_size;
        model_forward(&m, tok, tgt, B, T, &err);
        model_backward(&m, tok, tgt, 1.0f);
        size_t peak = 0, after = model_bf16_scratch_allocated(&m, &peak);
        CHECK(after == scratch, "%s bf16: a step grew the scratch from %zu to %zu bytes", names[i], scratch, after);
        CHECK(c.n_expert ? peak <= after : peak == after, "%s bf16: a step used %zu of the %zu scratch bytes", names[i],
              peak, after);
        model_free(&m);
    }
}

/* Every tensor of the registry is covered exactly once per replica: split
 * tensors' slices add up to the whole over tp (and ep), replicated ones are
 * whole on every tp rank, and each layer lives on one pipeline stage. */
static void check_partition(const char *name, const Config *c, const PlanLayout *l) {
    Tensor *t = NULL;
    int n = 0;
    size_t total = 0;
    Err err = {0};
    if (registry_build(c, &t, &n, &total, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    size_t *got = calloc((size_t)n, sizeof *got);
    size_t sum_local = 0, tied = 0;
    int world = l->tp * l->pp * l->dp;
    for (int rank = 0; rank < world; rank++) {
        RankShard rs;
        if (plan_shard_build(c, l, rank, &rs, &err)) {
            CHECK(0, "%s rank %d: %s", name, rank, err.msg);
            break;
        }
        if (rs.dp_rank < l->ep) { /* one model replica: dp ranks 0..ep-1 hold every expert once */
            sum_local += rs.n_dense * (rs.dp_rank == 0) + rs.n_expert;
            for (int k = 0; k < rs.n; k++) {
                const ShardTensor *s = &rs.t[k];
                if (s->tied_copy) {
                    if (rs.dp_rank == 0) tied += s->numel;
                    continue;
                }
                for (int j = 0; j < n; j++)
                    if (strcmp(t[j].name, s->name) == 0 && (s->expert || rs.dp_rank == 0)) {
                        got[j] += s->numel;
                        CHECK(s->split_dim >= 0 || s->expert || s->numel == t[j].numel, "%s: %s replicated whole", name,
                              s->name);
                    }
            }
        }
        plan_shard_free(&rs);
    }
    for (int j = 0; j < n; j++) {
        int repl = 0; /* k/v rows of a replicated kv head sum to more than the whole */
        if (strstr(t[j].name, "attn_k") || strstr(t[j].name, "attn_v")) repl = c->n_kv_head % l->tp != 0;
        int split = strstr(t[j].name, "attn_q") || strstr(t[j].name, "attn_k") || strstr(t[j].name, "attn_v") ||
                    strstr(t[j].name, "ffn_gate.") || strstr(t[j].name, "ffn_up") || strstr(t[j].name, "exps") ||
                    strstr(t[j].name, "token_embd") || strstr(t[j].name, "output.weight") ||
                    (strstr(t[j].name, "attn_output.weight") || strstr(t[j].name, "ffn_down.weight"));
        size_t expect = split ? t[j].numel : t[j].numel * (size_t)l->tp;
        if (strstr(t[j].name, "ffn_down_exps.bias")) expect = t[j].numel * (size_t)l->tp;
        if (repl) expect = t[j].numel / (size_t)c->n_kv_head * (size_t)l->tp;
        CHECK(got[j] == expect, "%s tp%d pp%d ep%d: %s covered %zu elements, expected %zu", name, l->tp, l->pp, l->ep,
              t[j].name, got[j], expect);
    }
    if (c->tie_embeddings && l->pp > 1)
        CHECK(tied == (size_t)c->vocab_size * c->d_model, "%s: tied output copy on the last stage (%zu)", name, tied);
    else
        CHECK(tied == 0, "%s: no tied copy without pipeline", name);
    free(got);
    free(t);
}

static void test_partitions(void) {
    struct {
        const char *name;
        int tp, pp, dp, ep, vpp;
    } cases[] = {
        {"gpt2-tiny", 2, 2, 2, 1, 1}, {"gpt2-tiny", 4, 1, 1, 1, 1}, {"gpt2-tiny", 1, 4, 1, 1, 1},
        {"gpt2-tiny", 2, 2, 1, 1, 2}, {"llama-tiny", 2, 2, 2, 1, 1}, {"llama-tiny", 4, 1, 1, 1, 1},
        {"moe-tiny", 2, 2, 2, 2, 1},  {"moe-tiny", 1, 1, 4, 4, 1},  {"moe-tiny", 2, 1, 4, 2, 1},
        {"gpt2-small", 2, 1, 1, 1, 1}, /* vocabulary 50257 does not divide by 2 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Config c = preset(cases[i].name);
        PlanLayout l;
        plan_layout_default(&l);
        l.tp = cases[i].tp, l.pp = cases[i].pp, l.dp = cases[i].dp, l.ep = cases[i].ep, l.vpp = cases[i].vpp;
        check_partition(cases[i].name, &c, &l);
    }
    /* uneven vocabulary: the first rank takes the extra row */
    Config g = preset("gpt2-small");
    PlanLayout l;
    plan_layout_default(&l);
    l.tp = 2;
    RankShard a, b;
    Err err = {0};
    CHECK(plan_shard_build(&g, &l, 0, &a, &err) == 0 && plan_shard_build(&g, &l, 1, &b, &err) == 0, "%s", err.msg);
    CHECK(a.t[0].local[0] == 25129 && b.t[0].local[0] == 25128, "vocab split %lld + %lld", (long long)a.t[0].local[0],
          (long long)b.t[0].local[0]);
    plan_shard_free(&a);
    plan_shard_free(&b);
}

/* Megatron shapes for one rank of Llama 3 405B at tp 8 (Dubey et al. 2024:
 * 128 heads, 8 kv heads of 128, d_ff 53248): q (2048, 16384), k/v (128,
 * 16384), o (16384, 2048), gate/up (6656, 16384), down (16384, 6656). */
static void test_llama3_shapes(void) {
    Config c = preset("llama3-405b");
    PlanLayout l;
    plan_layout_default(&l);
    l.tp = 8, l.pp = 16, l.dp = 128;
    l.first_stage_layers = l.last_stage_layers = 7;
    RankShard rs;
    Err err = {0};
    int rank = 8 * 128 * 3 + 5; /* pp stage 3, tp rank 5, dp rank 0 */
    CHECK(plan_shard_build(&c, &l, rank, &rs, &err) == 0, "%s", err.msg);
    CHECK(rs.pp_rank == 3 && rs.tp_rank == 5 && rs.dp_rank == 0, "coords %d %d %d", rs.pp_rank, rs.tp_rank, rs.dp_rank);
    struct {
        const char *suffix;
        long long r, c;
    } want[] = {{"attn_q.weight", 2048, 16384},      {"attn_k.weight", 128, 16384}, {"attn_v.weight", 128, 16384},
                {"attn_output.weight", 16384, 2048}, {"ffn_gate.weight", 6656, 16384}, {"ffn_up.weight", 6656, 16384},
                {"ffn_down.weight", 16384, 6656}};
    int layers_seen = 0;
    for (int k = 0; k < rs.n; k++) {
        const ShardTensor *s = &rs.t[k];
        if (strstr(s->name, "attn_norm.weight")) {
            layers_seen++;
            CHECK(s->local[0] == 16384, "norms replicated");
        }
        for (int w = 0; w < 7; w++)
            if (strstr(s->name, want[w].suffix))
                CHECK(s->local[0] == want[w].r && s->local[1] == want[w].c, "%s local [%lld, %lld]", s->name,
                      (long long)s->local[0], (long long)s->local[1]);
        CHECK(strncmp(s->name, "token_embd", 10) && strncmp(s->name, "output", 6), "%s: embeddings are not on stage 3",
              s->name);
    }
    CHECK(layers_seen == 8, "stage 3 holds 8 layers (got %d)", layers_seen);
    /* 7 layers on stage 0, then 8 per stage: stage 3 holds layers 23..30 */
    CHECK(strcmp(rs.t[0].name, "blk.23.attn_norm.weight") == 0, "stage 3 starts at layer 23: %s", rs.t[0].name);
    plan_shard_free(&rs);
}

/* plan_dry_run prints every tensor of the rank and totals equal to the
 * planner's; it never allocates tensors, so a 2T model is instant. */
static void test_dry_run(void) {
    Config c = preset("olympus-2t");
    PlanLayout l;
    plan_layout_default(&l);
    l.tp = 8, l.pp = 8, l.dp = 4, l.zero = 1, l.precision = PREC_BF16;
    Err err = {0};
    int last = 8 * 4 * 7; /* first rank of the last stage */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    double t0 = time_now();
    CHECK(plan_dry_run(&c, &l, 0, f, &err) == 0, "%s", err.msg);
    CHECK(plan_dry_run(&c, &l, last, f, &err) == 0, "%s", err.msg);
    CHECK(plan_dry_run(&c, &l, 8 * 8 * 4, f, &err) == ERR_INVALID, "rank outside the world refused");
    fclose(f);
    CHECK(time_now() - t0 < 2.0, "dry run of a 2T model is fast");
    CHECK(strstr(buf, "rank 0 of 256") && strstr(buf, "token_embd.weight"), "rank 0 has the embedding");
    const char *second = strstr(buf, "rank 224 of 256");
    CHECK(second && strstr(second, "output.weight") && strstr(second, "output_norm.weight"), "last stage has the output");
    CHECK(strstr(buf, "zero-1 shard (optimizer)"), "zero shard printed");
    RankShard rs;
    CHECK(plan_shard_build(&c, &l, 0, &rs, &err) == 0, "%s", err.msg);
    char want[128];
    snprintf(want, sizeof want, "parameters on this rank: %zu", rs.n_dense + rs.n_expert);
    CHECK(strstr(buf, want) != NULL, "dry run prints %s", want);
    PlanMemory pm = {0};
    plan_state_memory(&l, rs.n_dense, rs.n_expert, &pm);
    snprintf(want, sizeof want, "bytes: weights %.0f  grads %.0f  optimizer %.0f", pm.weights, pm.grads, pm.optimizer);
    CHECK(strstr(buf, want) != NULL, "dry run bytes equal the planner's: %s", want);
    plan_shard_free(&rs);
    free(buf);
    /* every rank of a small layout through the loop */
    Config g = preset("moe-tiny");
    plan_layout_default(&l);
    l.tp = 2, l.dp = 2, l.ep = 2, l.zero = 2;
    f = open_memstream(&buf, &len);
    CHECK(plan_dry_run_all(&g, &l, f, &err) == 0, "%s", err.msg);
    fclose(f);
    CHECK(strstr(buf, "rank 3 of 4") && strstr(buf, "ffn_up_exps.weight") && strstr(buf, "expert chunk 0 of dp/ep 1"),
          "all ranks, experts");
    free(buf);
}

/* ZeRO buckets (dist/zero.h) partition a rank's registry: contiguous, whole
 * tensors, expert tensors apart with ep > 1 and chunked over dp/ep, chunks
 * covering each bucket, staging big enough for any block. */
static void test_zero_buckets(void) {
    const char *names[] = {"gpt2-tiny", "moe-tiny"};
    for (int k = 0; k < 2; k++) {
        Config c = preset(names[k]);
        ModelShard s;
        model_shard_whole(&s, &c);
        const int ep = k == 1 ? 2 : 1, dp = 4;
        s.ep_size = ep;
        Tensor *t = NULL;
        int n = 0;
        size_t np = 0;
        Err err = {0};
        CHECK(registry_build_shard(&c, &s, &t, &n, &np, &err) == 0, "%s", err.msg);
        ZeroLayout z;
        CHECK(zero_layout_build(t, n, c.n_layer, dp, ep, &z, &err) == 0, "%s", err.msg);
        size_t at = 0, opt = 0, block = 0;
        int experts = 0;
        for (int i = 0; i < z.n_buckets; i++) {
            const ZeroBucket *b = &z.buckets[i];
            const size_t g = (size_t)(b->expert ? dp / ep : dp);
            CHECK(b->a == at && b->b > b->a, "%s bucket %d starts at %zu (expected %zu)", names[k], i, b->a, at);
            CHECK(b->chunk * g >= b->b - b->a && (b->chunk - 1) * g < b->b - b->a, "%s bucket %d chunk", names[k], i);
            CHECK(b->opt_off == opt, "%s bucket %d opt_off", names[k], i);
            if (!b->edge) {
                block = (i > 0 && z.buckets[i - 1].layer == b->layer) ? block : 0;
                CHECK(b->soff == block, "%s bucket %d staging offset %zu", names[k], i, b->soff);
                block += b->chunk * g;
                CHECK(block <= z.block_len, "%s block staging %zu < %zu", names[k], z.block_len, block);
            }
            for (int j = 0; j < n; j++) /* whole tensors, experts apart */
                if (t[j].offset >= b->a && t[j].offset < b->b)
                    CHECK(t[j].offset + t[j].numel <= b->b && (ep == 1 || !!(t[j].flags & PF_EXPERT) == b->expert),
                          "%s: %s in bucket %d", names[k], t[j].name, i);
            experts += b->expert;
            at = b->b;
            opt += b->chunk;
        }
        CHECK(at == np && opt == z.opt_len, "%s: buckets cover %zu of %zu", names[k], at, np);
        CHECK((experts > 0) == (ep > 1), "%s: %d expert buckets", names[k], experts);
        ZeroFloats f3 = zero_floats(&z, np, 3), f0 = zero_floats(&z, np, 0);
        CHECK(f0.weights == np && f0.grads == np && f0.optimizer == 2 * np, "%s: stage 0 is whole", names[k]);
        CHECK(f3.weights < np && f3.grads < np && f3.optimizer == 2 * z.opt_len, "%s: stage 3 sharded", names[k]);
        zero_layout_free(&z);
        free(t);
    }
}

int main(void) {
    test_zero_buckets();
    test_engine_allocation();
    test_engine_allocation_bf16();
    test_partitions();
    test_llama3_shapes();
    test_dry_run();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_plan_shard: all checks passed\n");
    return 0;
}

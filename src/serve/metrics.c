/* serve: /metrics in Prometheus' text exposition format (version 0.0.4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

/* Upper bounds (seconds) of the latency histograms' buckets. */
static const double TTFT_LE[METRIC_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double ITL_LE[METRIC_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5};

void metrics_status(Metrics *m, int status) {
    for (int i = 0; i < m->n_status; i++)
        if (m->status_code[i] == status) {
            m->status_count[i]++;
            return;
        }
    if (m->n_status < 16) {
        m->status_code[m->n_status] = status;
        m->status_count[m->n_status++] = 1;
    }
}

static void observe(uint64_t *buckets, const double *le, double v, uint64_t times) {
    int b = 0;
    while (b < METRIC_BUCKETS && v > le[b]) b++;
    buckets[b] += times;
}

void metrics_observe(Metrics *m, double ttft, double itl_mean, int n_itl) {
    observe(m->ttft, TTFT_LE, ttft, 1);
    m->ttft_sum += ttft;
    m->ttft_n++;
    if (n_itl > 0) { /* the request's mean gap, counted once per gap */
        observe(m->itl, ITL_LE, itl_mean, (uint64_t)n_itl);
        m->itl_sum += itl_mean * n_itl;
        m->itl_n += (uint64_t)n_itl;
    }
}

static void histogram(FILE *f, const char *name, const char *help, const uint64_t *b, const double *le, double sum,
                      uint64_t n) {
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < METRIC_BUCKETS; i++) {
        cum += b[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, le[i], (unsigned long long)cum);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)n, name, sum, name,
            (unsigned long long)n);
}

char *metrics_text(Server *s) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    pthread_mutex_lock(&s->lock);
    const Metrics *m = &s->m;
    fprintf(f, "# HELP jarip_requests_total HTTP responses by status code.\n# TYPE jarip_requests_total counter\n");
    for (int i = 0; i < m->n_status; i++)
        fprintf(f, "jarip_requests_total{status=\"%d\"} %llu\n", m->status_code[i], (unsigned long long)m->status_count[i]);
    fprintf(f, "# HELP jarip_prompt_tokens_total Prompt tokens of finished requests.\n# TYPE jarip_prompt_tokens_total counter\n"
               "jarip_prompt_tokens_total %llu\n",
            (unsigned long long)m->prompt_tokens);
    fprintf(f, "# HELP jarip_prompt_tokens_cached_total Prompt tokens found in a slot's cache.\n"
               "# TYPE jarip_prompt_tokens_cached_total counter\njarip_prompt_tokens_cached_total %llu\n",
            (unsigned long long)m->cached_tokens);
    fprintf(f, "# HELP jarip_generated_tokens_total Generated tokens.\n# TYPE jarip_generated_tokens_total counter\n"
               "jarip_generated_tokens_total %llu\n",
            (unsigned long long)m->gen_tokens);
    fprintf(f, "# HELP jarip_queue_length Requests waiting for a slot.\n# TYPE jarip_queue_length gauge\njarip_queue_length %d\n",
            s->n_queued);
    fprintf(f, "# HELP jarip_slots_active Slots running a request.\n# TYPE jarip_slots_active gauge\njarip_slots_active %d\n",
            s->n_active);
    fprintf(f, "# HELP jarip_slots_total Slots.\n# TYPE jarip_slots_total gauge\njarip_slots_total %d\n", s->n_slots);
    histogram(f, "jarip_time_to_first_token_seconds", "Time from a request's arrival to its first token.", m->ttft, TTFT_LE,
              m->ttft_sum, m->ttft_n);
    histogram(f, "jarip_inter_token_latency_seconds", "Time between tokens (each request's mean, once per gap).", m->itl,
              ITL_LE, m->itl_sum, m->itl_n);
    pthread_mutex_unlock(&s->lock);
    fclose(f);
    return buf;
}

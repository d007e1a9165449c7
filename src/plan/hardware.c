/* Hardware presets (vendor datasheet figures, dense, no sparsity), a JSON
 * loader for others, and `cpu`: this machine, measured. */
#include "plan.h"

#include <jansson.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T12 1e12
#define GB 1e9
#define GIB 1073741824.0

typedef struct {
    const char *name;
    double bf16_tflops, fp32_tflops, mem_bytes, intra_gbs, net_gbs;
    int per_node;
    double power_w;
    const char *note;
} HwPreset;

/* Sources: NVIDIA A100 datasheet (312 TFLOP/s bf16 dense, 19.5 fp32, NVLink3
 * 600 GB/s bidirectional = 300 per direction, DGX A100 one 200 Gb/s HDR port
 * per GPU, 400 W SXM); H100 SXM datasheet (989 bf16 dense, 67 fp32, NVLink4
 * 900 GB/s = 450 per direction, DGX H100 one 400 Gb/s NDR port per GPU,
 * 700 W); H200 SXM (H100 compute, 141 GB HBM3e, 700 W); DGX B200 (72 PFLOP/s
 * fp8 training for 8 GPUs = 2.25 PFLOP/s bf16 dense each, 180 GB usable HBM3e
 * per GPU, NVLink5 1.8 TB/s = 900 per direction, 1000 W); Google TPU v4
 * (Jouppi et al. 2023, ISCA: 275 TFLOP/s bf16, 32 GiB HBM2, ICI 50 GB/s per
 * link per direction, 4 chips per tray, 192 W max). */
static const HwPreset presets[] = {
    {"a100-40g", 312, 19.5, 40 * GIB, 300, 25, 8, 400, "NVIDIA A100 SXM 40GB"},
    {"a100-80g", 312, 19.5, 80 * GIB, 300, 25, 8, 400, "NVIDIA A100 SXM 80GB"},
    {"h100-80g", 989.4, 66.9, 80 * GIB, 450, 50, 8, 700, "NVIDIA H100 SXM 80GB"},
    {"h200-141g", 989.4, 66.9, 141 * GB, 450, 50, 8, 700, "NVIDIA H200 SXM 141GB"},
    {"b200", 2250, 75, 180 * GB, 900, 50, 8, 1000, "NVIDIA B200 (DGX B200)"},
    {"tpu-v4", 275, 0, 32 * GIB, 100, 50, 4, 192, "Google TPU v4 (no fp32 matmul figure published)"},
};

static const char *names[sizeof presets / sizeof presets[0] + 2];

const char *const *hw_preset_names(void) {
    size_t n = sizeof presets / sizeof presets[0];
    for (size_t i = 0; i < n; i++) names[i] = presets[i].name;
    names[n] = "cpu";
    names[n + 1] = NULL;
    return names;
}

/* Defaults shared by every device unless a preset or file says otherwise:
 * a large bf16 matmul reaches ~70% of the datasheet peak on these parts
 * (assumption of the step-time model, see docs/planner.md), and a plan may
 * fill 90% of device memory (CUDA context, NCCL buffers, fragmentation). */
static void hw_common(Hardware *hw) {
    hw->gemm_efficiency = 0.7;
    hw->usable_fraction = 0.9;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int hw_get(Hardware *hw, const char *name, Err *err) {
    memset(hw, 0, sizeof *hw);
    if (strcmp(name, "cpu") == 0) return hw_measure_cpu(hw, err);
    if (ends_with(name, ".json")) return hw_load_json(hw, name, err);
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const HwPreset *p = &presets[i];
        if (strcmp(p->name, name) != 0) continue;
        hw_common(hw);
        snprintf(hw->name, sizeof hw->name, "%s", p->name);
        snprintf(hw->note, sizeof hw->note, "%s", p->note);
        hw->peak_bf16 = p->bf16_tflops * T12;
        hw->peak_fp32 = p->fp32_tflops * T12;
        hw->memory = p->mem_bytes;
        hw->intra_bw = p->intra_gbs * GB;
        hw->net_bw = p->net_gbs * GB;
        hw->devices_per_node = p->per_node;
        hw->power_w = p->power_w;
        return 0;
    }
    return err_set(err, ERR_INVALID,
                   "unknown --gpu '%s' (a100-40g, a100-80g, h100-80g, h200-141g, b200, tpu-v4, cpu, or FILE.json)", name);
}

/* Keys: name, peak_bf16_tflops, peak_fp32_tflops, memory_gb, intra_node_gb_s,
 * network_gb_s, devices_per_node, power_w, [gemm_efficiency],
 * [usable_fraction]; GB = 1e9 bytes. Unknown keys are an error. */
int hw_load_json(Hardware *hw, const char *path, Err *err) {
    static const char *const keys[] = {"name", "peak_bf16_tflops", "peak_fp32_tflops", "memory_gb",
                                       "intra_node_gb_s", "network_gb_s", "devices_per_node", "power_w",
                                       "gemm_efficiency", "usable_fraction", "note", NULL};
    static const int required[] = {0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0};
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) return err_set(err, ERR_FORMAT, "%s: %s (line %d)", path, je.text, je.line);
    int rc = 0;
    double v[11] = {0};
    memset(hw, 0, sizeof *hw);
    hw_common(hw);
    if (!json_is_object(o)) {
        rc = err_set(err, ERR_FORMAT, "%s: top level must be a JSON object", path);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        int k = -1;
        for (int i = 0; keys[i]; i++)
            if (strcmp(key, keys[i]) == 0) k = i;
        if (k < 0) {
            rc = err_set(err, ERR_INVALID, "%s: unknown key \"%s\"", path, key);
            goto done;
        }
        if (k == 0 || k == 10) {
            if (!json_is_string(val)) {
                rc = err_set(err, ERR_INVALID, "%s: \"%s\" must be a string", path, key);
                goto done;
            }
            if (k == 0) snprintf(hw->name, sizeof hw->name, "%s", json_string_value(val));
            else snprintf(hw->note, sizeof hw->note, "%s", json_string_value(val));
            continue;
        }
        if (!json_is_number(val) || json_number_value(val) < 0) {
            rc = err_set(err, ERR_INVALID, "%s: \"%s\" must be a non-negative number", path, key);
            goto done;
        }
        v[k] = json_number_value(val);
    }
    for (int i = 0; keys[i]; i++)
        if (required[i] && !json_object_get(o, keys[i])) {
            rc = err_set(err, ERR_INVALID, "%s: missing key \"%s\"", path, keys[i]);
            goto done;
        }
    if (v[6] < 1 || v[6] > 1e6) {
        rc = err_set(err, ERR_INVALID, "%s: \"devices_per_node\" must be >= 1", path);
        goto done;
    }
    if (v[1] <= 0 || v[3] <= 0 || v[4] <= 0 || v[5] <= 0) {
        rc = err_set(err, ERR_INVALID, "%s: peak, memory and bandwidths must be > 0", path);
        goto done;
    }
    if (!hw->name[0]) snprintf(hw->name, sizeof hw->name, "%s", path);
    hw->peak_bf16 = v[1] * T12;
    hw->peak_fp32 = v[2] * T12;
    hw->memory = v[3] * GB;
    hw->intra_bw = v[4] * GB;
    hw->net_bw = v[5] * GB;
    hw->devices_per_node = (int)v[6];
    hw->power_w = v[7];
    if (json_object_get(o, "gemm_efficiency")) hw->gemm_efficiency = v[8];
    if (json_object_get(o, "usable_fraction")) hw->usable_fraction = v[9];
    if (hw->gemm_efficiency <= 0 || hw->gemm_efficiency > 1 || hw->usable_fraction <= 0 || hw->usable_fraction > 1)
        rc = err_set(err, ERR_INVALID, "%s: gemm_efficiency and usable_fraction must be in (0, 1]", path);
done:
    json_decref(o);
    return rc;
}

/* ---- cpu: measured ------------------------------------------------------- */
/* sgemm FLOP/s through the engine's matmul backend (gemm_f32). */
static double measure_sgemm(Err *err) {
    const int n = 768;
    float *a = xalloc((size_t)n * n * sizeof *a, err), *b = xalloc((size_t)n * n * sizeof *b, err),
          *c = xalloc((size_t)n * n * sizeof *c, err);
    double best = 0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)n * n; i++) {
            a[i] = (float)(i % 7) * 0.1f;
            b[i] = (float)(i % 5) * 0.1f;
        }
        gemm_f32(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up: JIT, pages */
        for (int round = 0; round < 3; round++) {
            double t0 = time_now();
            gemm_f32(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            double dt = time_now() - t0;
            double r = 2.0 * n * (double)n * n / dt;
            if (dt > 0 && r > best) best = r;
        }
    }
    xfree(a);
    xfree(b);
    xfree(c);
    return best;
}

int hw_measure_cpu(Hardware *hw, Err *err) {
    memset(hw, 0, sizeof *hw);
    hw_common(hw);
    double peak = cpu_peak_flops(0); /* the engine's own MFU denominator */
    double sgemm = measure_sgemm(err);
    /* Other processes share these cores: probe again and keep the best; no
     * matmul can beat the FMA peak, so a faster sgemm means the probe was
     * disturbed and the sgemm rate is the better lower bound. */
    double again = cpu_peak_flops(0);
    if (again > peak) peak = again;
    if (sgemm > peak) peak = sgemm;
    if (peak <= 0) return err_set(err, ERR_IO, "cpu: the FMA probe measured nothing");
    snprintf(hw->name, sizeof hw->name, "cpu");
    int nt = omp_get_max_threads();
    hw->peak_fp32 = peak;
    hw->peak_bf16 = 0; /* not measured: bf16 plans on cpu need a rate */
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    hw->memory = pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
    /* Ranks on one machine talk through shared memory; the network figure is
     * an assumed 10 GbE link (1.25 GB/s) between machines. */
    hw->intra_bw = 5 * GB;
    hw->net_bw = 1.25 * GB;
    hw->devices_per_node = 1;
    /* Assumed 10 W per core: no power counter is readable in a container. */
    hw->power_w = 10.0 * nt;
    hw->gemm_efficiency = sgemm > 0 ? sgemm / peak : 1.0;
    hw->usable_fraction = 0.8;
    snprintf(hw->note, sizeof hw->note, "this machine, %d threads: FMA peak %.0f GFLOP/s, sgemm %.0f GFLOP/s (measured)",
             nt, peak / 1e9, sgemm / 1e9);
    return 0;
}

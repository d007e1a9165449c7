/* Checkpoints: a directory per save, written under a temporary name and
 * renamed when complete; DIR/latest (atomic) names the newest.
 *
 * model.bin layout (little-endian):
 *   "JARIPCK1"  u32 version=1  u32 n_tensors  u64 n_params  u32 has_optimizer  u32 0
 *   n_tensors x { char name[48]; i32 ndim; i32 dtype; i64 shape[4]; u64 offset }
 *   f32 weights[n_params]  [f32 adam_m[n_params]  f32 adam_v[n_params]]
 *   u32 crc32 of everything before it */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train.h"

#define CKPT_MAGIC "JARIPCK1"

typedef struct {
    char name[48];
    int32_t ndim, dtype;
    int64_t shape[4];
    uint64_t offset;
} DiskTensor;

typedef struct {
    char magic[8];
    uint32_t version, n_tensors;
    uint64_t n_params;
    uint32_t has_optimizer, reserved;
} DiskHeader;

/* Write all of buf to fd, updating the running CRC. */
static int write_all(int fd, const void *buf, size_t len, uint32_t *crc) {
    const char *p = buf;
    if (crc) *crc = crc32_update(*crc, buf, len);
    while (len) {
        ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The kill -9 test hook (TrainOptions.test_ckpt_sleep_ms). */
static void test_sleep(int ms) {
    if (ms > 0) usleep((useconds_t)ms * 1000);
}

static int write_model_bin(const Tensor *tensors, int n_tensors, size_t n_params, const float *params,
                           const float *adam_m, const float *adam_v, const char *path, int sleep_ms, Err *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return err_set(err, ERR_IO, "cannot create %s: %s", path, strerror(errno));
    uint32_t crc = 0;
    DiskHeader h = {{0}, 1, (uint32_t)n_tensors, n_params, adam_m != NULL, 0};
    memcpy(h.magic, CKPT_MAGIC, 8);
    int bad = write_all(fd, &h, sizeof h, &crc);
    for (int i = 0; i < n_tensors && !bad; i++) {
        const Tensor *t = &tensors[i];
        DiskTensor d;
        memset(&d, 0, sizeof d);
        memcpy(d.name, t->name, sizeof d.name);
        d.ndim = t->ndim;
        d.dtype = t->dtype;
        for (int j = 0; j < 4; j++) d.shape[j] = j < t->ndim ? t->shape[j] : 0;
        d.offset = t->offset;
        bad = write_all(fd, &d, sizeof d, &crc);
    }
    size_t bytes = n_params * sizeof(float);
    if (!bad) bad = write_all(fd, params, bytes, &crc);
    test_sleep(sleep_ms);
    if (!bad && adam_m) bad = write_all(fd, adam_m, bytes, &crc) || write_all(fd, adam_v, bytes, &crc);
    if (!bad) bad = write_all(fd, &crc, sizeof crc, NULL);
    if (!bad) bad = fsync(fd);
    if (close(fd) != 0) bad = 1;
    if (bad) return err_set(err, ERR_IO, "writing %s: %s", path, strerror(errno));
    return 0;
}

static int write_state(const TrainOptions *o, int step, const char *path, Err *err) {
    json_t *s = json_object();
    json_object_set_new(s, "step", json_integer(step));
    json_object_set_new(s, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(s, "data", json_string(o->data ? o->data : ""));
    json_object_set_new(s, "steps", json_integer(o->steps));
    json_object_set_new(s, "batch", json_integer(o->batch));
    json_object_set_new(s, "seq", json_integer(o->seq));
    json_object_set_new(s, "accum", json_integer(o->accum));
    json_object_set_new(s, "lr", json_real(o->lr));
    json_object_set_new(s, "lr_min", json_real(o->lr_min));
    json_object_set_new(s, "warmup", json_integer(o->warmup));
    json_object_set_new(s, "weight_decay", json_real(o->weight_decay));
    json_object_set_new(s, "beta1", json_real(o->beta1));
    json_object_set_new(s, "beta2", json_real(o->beta2));
    json_object_set_new(s, "eps", json_real(o->eps));
    json_object_set_new(s, "grad_clip", json_real(o->grad_clip));
    json_object_set_new(s, "eval_every", json_integer(o->eval_every));
    json_object_set_new(s, "eval_batches", json_integer(o->eval_batches));
    json_object_set_new(s, "save_every", json_integer(o->save_every));
    json_object_set_new(s, "keep", json_integer(o->keep));
    json_object_set_new(s, "precision", json_string(precision_name(o->precision > 0 ? o->precision : PRECISION_FP32)));
    /* the data position is the step: batches are a pure function of (seed, step) */
    json_object_set_new(s, "data_position", json_integer(step));
    char *text = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(s);
    int rc = file_write_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

static int text_file(const char *path, const char *text, Err *err) {
    return file_write_atomic(path, text, strlen(text), err);
}

/* Delete old ckpt_* directories beyond the newest `keep`. */
static void prune(const char *dir, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    char names[256][32];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (strncmp(e->d_name, "ckpt_", 5) == 0 && strlen(e->d_name) < 32 && !strstr(e->d_name, ".tmp"))
            snprintf(names[n++], 32, "%s", e->d_name);
    closedir(d);
    /* zero-padded step numbers sort lexically */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char t[32];
                memcpy(t, names[i], 32);
                memcpy(names[i], names[j], 32);
                memcpy(names[j], t, 32);
            }
    for (int i = 0; i < n - keep; i++) {
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", dir, names[i]) < (int)sizeof p) rm_rf(p);
    }
}

/* Index of the first NaN/Inf of x[0..n), or n. */
static size_t first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; x && i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

int checkpoint_write(const Config *c, const float *params, const float *adam_m, const float *adam_v,
                     const TrainOptions *o, int step, Err *err) {
    Tensor *tensors;
    int n_tensors;
    size_t n_params;
    int rc = registry_build(c, &tensors, &n_tensors, &n_params, err);
    if (rc) return rc;
    /* a poisoned checkpoint would replace the last good one after --keep
     * saves: refuse it, naming the tensor */
    const float *kinds[3] = {params, adam_m, adam_v};
    for (int k = 0; k < 3; k++) {
        size_t i = first_nonfinite(kinds[k], n_params);
        if (i == n_params) continue;
        const char *name = "?";
        for (int t = 0; t < n_tensors; t++)
            if (i >= tensors[t].offset && i - tensors[t].offset < (size_t)tensors[t].numel) name = tensors[t].name;
        rc = err_set(err, ERR_INVALID, "step %d: %s of %s hold %g at element %zu; no checkpoint written (the last is kept)",
                     step, k == 0 ? "the weights" : "the Adam state", name, (double)kinds[k][i], i);
        free(tensors);
        return rc;
    }
    char final[4096], tmp[4200], p[4400];
    snprintf(final, sizeof final, "%s/ckpt_%08d", o->out, step);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    rm_rf(tmp);
    if ((rc = mkdir_p(tmp, err))) goto done;
    char *cfg = config_to_json(c);
    snprintf(p, sizeof p, "%s/config.json", tmp);
    rc = text_file(p, cfg, err);
    free(cfg);
    if (rc) goto done;
    snprintf(p, sizeof p, "%s/state.json", tmp);
    if ((rc = write_state(o, step, p, err))) goto done;
    test_sleep(o->test_ckpt_sleep_ms);
    snprintf(p, sizeof p, "%s/model.bin", tmp);
    if ((rc = write_model_bin(tensors, n_tensors, n_params, params, adam_m, adam_v, p, o->test_ckpt_sleep_ms, err)))
        goto done;
    fsync_dir(tmp);
    rm_rf(final); /* a re-save of the same step replaces it */
    if (rename(tmp, final) != 0) {
        rc = err_set(err, ERR_IO, "renaming %s: %s", tmp, strerror(errno));
        goto done;
    }
    fsync_dir(o->out);
    test_sleep(o->test_ckpt_sleep_ms);
    char latest[64];
    snprintf(latest, sizeof latest, "ckpt_%08d\n", step);
    snprintf(p, sizeof p, "%s/latest", o->out);
    if ((rc = text_file(p, latest, err))) goto done;
    prune(o->out, o->keep > 0 ? o->keep : 2);
done:
    /* a failed write (a full disk) leaves no half checkpoint behind; the
     * previous one and `latest` are untouched */
    if (rc) rm_rf(tmp);
    free(tensors);
    return rc;
}

int checkpoint_save(const Model *m, const TrainOptions *o, int step, Err *err) {
    return checkpoint_write(&m->cfg, m->params, m->adam_m, m->adam_v, o, step, err);
}

void checkpoint_clean_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4400];
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        int stale_ckpt = strncmp(e->d_name, "ckpt_", 5) == 0 && n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0;
        if ((stale_ckpt || strstr(e->d_name, ".tmp.")) && snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p)
            rm_rf(p);
    }
    closedir(d);
}

int checkpoint_resolve(const char *dir, char *out, size_t out_len, Err *err) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/model.bin", dir);
    if (stat(p, &st) == 0) {
        snprintf(out, out_len, "%s", dir);
        return 0;
    }
    snprintf(p, sizeof p, "%s/latest", dir);
    char *text;
    size_t len;
    if (file_read_all(p, &text, &len, NULL) != 0)
        return err_set(err, ERR_IO, "%s is not a checkpoint or run directory (no model.bin or latest)", dir);
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' ')) text[--len] = 0;
    if (len == 0 || strchr(text, '/')) {
        free(text);
        return err_set(err, ERR_FORMAT, "%s/latest is malformed", dir);
    }
    snprintf(out, out_len, "%s/%s", dir, text);
    free(text);
    return 0;
}

int checkpoint_load_config(const char *ckpt, Config *c, Err *err) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", ckpt);
    return config_load(c, p, err);
}

static int read_state(const char *path, int *step, TrainOptions *o, Err *err) {
    json_error_t je;
    json_t *s = json_load_file(path, 0, &je);
    if (!s) return err_set(err, ERR_FORMAT, "%s: %s", path, je.text);
    json_t *st = json_object_get(s, "step");
    if (!json_is_integer(st) || json_integer_value(st) < 0) {
        json_decref(s);
        return err_set(err, ERR_FORMAT, "%s: missing or bad \"step\"", path);
    }
    *step = (int)json_integer_value(st);
    if (o) {
#define GI(k, f) do { json_t *v = json_object_get(s, k); if (json_is_integer(v)) o->f = (int)json_integer_value(v); } while (0)
#define GF(k, f) do { json_t *v = json_object_get(s, k); if (json_is_number(v)) o->f = (float)json_number_value(v); } while (0)
        GI("steps", steps); GI("batch", batch); GI("seq", seq); GI("accum", accum); GI("warmup", warmup);
        GI("eval_every", eval_every); GI("eval_batches", eval_batches); GI("save_every", save_every); GI("keep", keep);
        GF("lr", lr); GF("lr_min", lr_min); GF("weight_decay", weight_decay); GF("beta1", beta1); GF("beta2", beta2);
        GF("eps", eps); GF("grad_clip", grad_clip);
#undef GI
#undef GF
        json_t *v = json_object_get(s, "seed");
        if (json_is_integer(v)) o->seed = (uint64_t)json_integer_value(v);
        v = json_object_get(s, "precision");
        if (json_is_string(v) && precision_from_name(json_string_value(v)) >= 0)
            o->precision = precision_from_name(json_string_value(v));
        v = json_object_get(s, "data");
        if (json_is_string(v) && json_string_value(v)[0]) {
            snprintf(o->data_saved, sizeof o->data_saved, "%s", json_string_value(v));
            o->data = o->data_saved;
        }
    }
    json_decref(s);
    return 0;
}

int checkpoint_load(const char *ckpt, Model *m, int *step, TrainOptions *o, Err *err) {
    return checkpoint_read(ckpt, &m->cfg, m->params, m->adam_m, m->adam_v, step, o, err);
}

int checkpoint_read(const char *ckpt, const Config *c, float *params, float *adam_m, float *adam_v, int *step,
                    TrainOptions *o, Err *err) {
    char p[4200];
    snprintf(p, sizeof p, "%s/state.json", ckpt);
    int rc = read_state(p, step, o, err);
    if (rc) return rc;
    Tensor *tensors;
    int n_tensors;
    size_t n_params;
    if ((rc = registry_build(c, &tensors, &n_tensors, &n_params, err))) return rc;
    snprintf(p, sizeof p, "%s/model.bin", ckpt);
    char *buf;
    size_t len;
    if ((rc = file_read_all(p, &buf, &len, err))) return rc;
    rc = ERR_FORMAT;
    const DiskHeader *h = (const DiskHeader *)buf;
    if (len < sizeof *h + 4 || memcmp(h->magic, CKPT_MAGIC, 8) != 0) {
        err_set(err, ERR_FORMAT, "%s: not a jarip checkpoint (bad magic or truncated)", p);
        goto done;
    }
    uint32_t stored;
    memcpy(&stored, buf + len - 4, 4);
    if (crc32_update(0, buf, len - 4) != stored) {
        err_set(err, ERR_FORMAT, "%s: checksum mismatch (file is corrupted or truncated)", p);
        goto done;
    }
    if (h->version != 1 || h->n_tensors != (uint32_t)n_tensors || h->n_params != n_params) {
        err_set(err, ERR_FORMAT, "%s: holds %u tensors / %llu parameters, the config needs %d / %zu", p,
                h->n_tensors, (unsigned long long)h->n_params, n_tensors, n_params);
        goto done;
    }
    size_t bytes = n_params * sizeof(float);
    size_t need = sizeof *h + (size_t)h->n_tensors * sizeof(DiskTensor) + bytes * (h->has_optimizer ? 3 : 1) + 4;
    if (len != need) {
        err_set(err, ERR_FORMAT, "%s: size %zu, expected %zu", p, len, need);
        goto done;
    }
    const DiskTensor *dt = (const DiskTensor *)(buf + sizeof *h);
    for (int i = 0; i < n_tensors; i++) {
        const Tensor *t = &tensors[i];
        int same = strncmp(dt[i].name, t->name, sizeof dt[i].name) == 0 && dt[i].ndim == t->ndim && dt[i].offset == t->offset;
        for (int j = 0; j < t->ndim; j++) same &= dt[i].shape[j] == t->shape[j];
        if (!same) {
            err_set(err, ERR_FORMAT, "%s: tensor %d is %.48s, the config expects %s with another shape", p, i,
                    dt[i].name, t->name);
            goto done;
        }
    }
    const char *data = buf + sizeof *h + (size_t)h->n_tensors * sizeof(DiskTensor);
    memcpy(params, data, bytes);
    if (adam_m) {
        if (h->has_optimizer) {
            memcpy(adam_m, data + bytes, bytes);
            memcpy(adam_v, data + 2 * bytes, bytes);
        } else {
            memset(adam_m, 0, bytes);
            memset(adam_v, 0, bytes);
        }
    }
    rc = 0;
done:
    free(buf);
    free(tensors);
    return rc;
}

/* Corpus -> token shards (`jarip data prepare`).
 *
 * Inputs are streamed in blocks. Each block is cut into units -- a line
 * (lines), a JSON record (jsonl), or a ~64 KiB piece of a file cut where
 * the tokenizer allows (text) -- which threads encode in parallel; units
 * are then written in input order, so the output does not depend on the
 * thread count. Unit k goes to the validation split when floor((k+1)*f)
 * > floor(k*f): an exact share f, spread evenly, with no randomness. */
#include <errno.h>
#include <jansson.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "tokenizer/tokenizer.h"

#define BLOCK_BYTES (16u << 20)
#define SEGMENT_BYTES (64u << 10)
#define UNITS_PER_TASK 64

typedef struct {
    size_t start, len;
    uint64_t line;     /* 1-based line number of a jsonl record (for errors) */
    int doc_end;       /* append end-of-text after it */
    int val;
} Unit;

typedef struct {
    int32_t *ids;
    size_t n, cap;
} IdBuf;

static int is_val(uint64_t k, double f) { return (uint64_t)((double)(k + 1) * f) > (uint64_t)((double)k * f); }

/* Encode one unit into out (appending). jsonl units are parsed first. */
static int encode_unit(TokEncoder *enc, int format, const char *field, const uint8_t *p, size_t n, uint64_t line,
                       const char *path, IdBuf *out, Err *err) {
    if (format != DATA_FORMAT_JSONL) return tok_encoder_append(enc, p, n, 0, &out->ids, &out->n, &out->cap, err);
    json_error_t je;
    json_t *rec = json_loadb((const char *)p, n, JSON_ALLOW_NUL, &je);
    if (!rec) return err_set(err, ERR_FORMAT, "%s:%llu: not valid JSON: %s", path, (unsigned long long)line, je.text);
    json_t *v = json_object_get(rec, field);
    int rc = 0;
    if (!json_is_string(v))
        rc = err_set(err, ERR_FORMAT, "%s:%llu: record has no string field \"%s\"", path, (unsigned long long)line, field);
    else
        rc = tok_encoder_append(enc, json_string_value(v), json_string_length(v), 0, &out->ids, &out->n, &out->cap, err);
    json_decref(rec);
    return rc;
}

/* Cut buf[0..have) into units; returns bytes consumed (the rest waits for
 * more input unless eof). */
static size_t make_units(const Tokenizer *tok, int format, const uint8_t *buf, size_t have, int eof, uint64_t *line,
                         Unit **units, size_t *nu, size_t *ucap) {
    size_t pos = 0;
    *nu = 0;
    for (;;) {
        size_t end, next;
        if (format == DATA_FORMAT_TEXT) {
            if (pos >= have) break;
            /* keep a margin so a cut point can be found, unless the input
             * ended or the block is full and nothing was cut yet */
            if (!eof && have - pos < 2 * SEGMENT_BYTES && (pos > 0 || have < BLOCK_BYTES)) break;
            size_t want = pos + SEGMENT_BYTES;
            end = want >= have ? have : tokenizer_next_cut(tok, buf, have, want);
            if (end >= have && !eof) {
                if (pos > 0) break;
                end = have; /* no cut point in a whole block: cut anyway (see docs/shards.md) */
            }
            next = end;
        } else {
            const uint8_t *nl = pos < have ? memchr(buf + pos, '\n', have - pos) : NULL;
            if (!nl && (!eof || pos >= have)) break;
            end = nl ? (size_t)(nl - buf) : have;
            next = nl ? end + 1 : have;
            (*line)++;
        }
        /* a text file is one document: its end-of-text is written by the caller */
        Unit u = {pos, end - pos, *line, format != DATA_FORMAT_TEXT, 0};
        if (format != DATA_FORMAT_TEXT) {
            size_t e = end;
            if (e > pos && buf[e - 1] == '\r') e--; /* CRLF files */
            u.len = e - pos;
            int blank = 1;
            for (size_t i = pos; i < e && blank; i++) blank = buf[i] == ' ' || buf[i] == '\t';
            if (blank) u.len = 0; /* empty documents are skipped */
        }
        if (u.len > 0) {
            if (*nu == *ucap) {
                size_t c = *ucap ? *ucap * 2 : 1024;
                Unit *q = realloc(*units, c * sizeof *q);
                if (!q) return (size_t)-1;
                *units = q;
                *ucap = c;
            }
            (*units)[(*nu)++] = u;
        }
        pos = next;
    }
    return pos;
}

static int dir_is_empty_or_absent(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return 1;
    if (!S_ISDIR(st.st_mode)) return 0;
    return rmdir(path) == 0; /* succeeds only when empty */
}

static int write_meta(const char *dir, const PrepareOptions *o, const PrepareStats *st, Err *err) {
    static const char *fmt[] = {"text", "lines", "jsonl"};
    json_t *m = json_pack("{s:i, s:i, s:i, s:s, s:f, s:{s:I, s:I, s:i}, s:{s:I, s:I, s:i}, s:I, s:I}", "version",
                          SHARD_VERSION, "vocab_size", tokenizer_vocab_size(o->tok), "eot_id", tokenizer_eos_id(o->tok),
                          "format", fmt[o->format], "val_fraction", o->val_fraction, "train", "documents",
                          (json_int_t)st->docs[0], "tokens", (json_int_t)st->tokens[0], "shards", st->shards[0], "val",
                          "documents", (json_int_t)st->docs[1], "tokens", (json_int_t)st->tokens[1], "shards",
                          st->shards[1], "input_bytes", (json_int_t)st->bytes, "invalid_utf8_bytes",
                          (json_int_t)st->invalid_utf8);
    char *text = m ? json_dumps(m, JSON_INDENT(2)) : NULL;
    json_decref(m);
    if (!text) return err_set(err, ERR_NOMEM, "cannot build meta.json");
    char path[4096];
    if (snprintf(path, sizeof path, "%s/meta.json", dir) >= (int)sizeof path) {
        free(text);
        return err_set(err, ERR_INVALID, "output path is too long");
    }
    int rc = file_write_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

int data_prepare(const PrepareOptions *o, PrepareStats *st, Err *err) {
    memset(st, 0, sizeof *st);
    const Tokenizer *tok = o->tok;
    int32_t eot = tokenizer_eos_id(tok);
    if (eot < 0) eot = tokenizer_special_id(tok, "<|endoftext|>");
    if (eot < 0) return err_set(err, ERR_INVALID, "the tokenizer has no end-of-text token to separate documents");
    if (o->n_inputs < 1) return err_set(err, ERR_INVALID, "no input files");
    if (o->val_fraction < 0 || o->val_fraction >= 1)
        return err_set(err, ERR_INVALID, "val fraction %g is outside [0, 1)", o->val_fraction);
    if (!dir_is_empty_or_absent(o->out_dir))
        return err_set(err, ERR_INVALID, "output %s exists and is not an empty directory", o->out_dir);
    uint64_t total = 0;
    for (int i = 0; i < o->n_inputs; i++) {
        struct stat sb;
        if (stat(o->inputs[i], &sb) != 0) return err_set(err, ERR_IO, "cannot open input %s: %s", o->inputs[i], strerror(errno));
        if (S_ISDIR(sb.st_mode)) return err_set(err, ERR_INVALID, "input %s is a directory", o->inputs[i]);
        total += (uint64_t)sb.st_size;
    }
    char partial[4096];
    if (snprintf(partial, sizeof partial, "%s.partial", o->out_dir) >= (int)sizeof partial)
        return err_set(err, ERR_INVALID, "output path is too long");
    rm_rf(partial); /* left by an interrupted run */
    if (mkdir_p(partial, err)) return err->code;
    const char *field = o->jsonl_field ? o->jsonl_field : "text";
    int nth = o->threads > 0 ? o->threads : omp_get_max_threads();
    int vocab = tokenizer_vocab_size(tok);
    ShardWriter *w[2] = {NULL, NULL};
    TokEncoder **enc = calloc((size_t)nth, sizeof *enc);
    uint8_t *buf = malloc(BLOCK_BYTES);
    Unit *units = NULL;
    size_t nu = 0, ucap = 0;
    IdBuf *task_out = NULL;
    size_t ntask_cap = 0;
    int rc = 0;
    if (!enc || !buf) rc = err_set(err, ERR_NOMEM, "out of memory");
    for (int s = 0; s < 2 && !rc; s++)
        rc = shard_writer_open(&w[s], partial, s ? "val" : "train", s, vocab, eot, o->shard_tokens, err);
    for (int i = 0; i < nth && !rc; i++)
        if (!(enc[i] = tok_encoder_new(tok, err))) rc = ERR_NOMEM;
    uint64_t unit_counter = 0, done = 0;
    for (int f = 0; f < o->n_inputs && !rc; f++) {
        const char *path = o->inputs[f];
        FILE *fp = fopen(path, "rb");
        if (!fp) {
            rc = err_set(err, ERR_IO, "cannot open input %s: %s", path, strerror(errno));
            break;
        }
        size_t have = 0;
        uint64_t line = 0;
        int eof = 0, last_split = -1;
        while (!rc) {
            size_t got = eof ? 0 : fread(buf + have, 1, BLOCK_BYTES - have, fp);
            if (ferror(fp)) {
                rc = err_set(err, ERR_IO, "read error in %s", path);
                break;
            }
            have += got;
            if (have < BLOCK_BYTES && !eof) eof = feof(fp);
            size_t used = make_units(tok, o->format, buf, have, eof, &line, &units, &nu, &ucap);
            if (used == (size_t)-1) {
                rc = err_set(err, ERR_NOMEM, "out of memory");
                break;
            }
            if (used == 0 && have == BLOCK_BYTES && o->format != DATA_FORMAT_TEXT) {
                rc = err_set(err, ERR_UNSUPPORTED, "%s: a line longer than %u MiB", path, BLOCK_BYTES >> 20);
                break;
            }
            for (size_t u = 0; u < nu; u++) units[u].val = is_val(unit_counter++, o->val_fraction);
            size_t ntask = (nu + UNITS_PER_TASK - 1) / UNITS_PER_TASK;
            if (ntask > ntask_cap) {
                IdBuf *q = realloc(task_out, ntask * sizeof *q);
                if (!q) {
                    rc = err_set(err, ERR_NOMEM, "out of memory");
                    break;
                }
                memset(q + ntask_cap, 0, (ntask - ntask_cap) * sizeof *q);
                task_out = q;
                ntask_cap = ntask;
            }
            size_t *ucount = malloc((nu + 1) * sizeof *ucount);
            if (!ucount) {
                rc = err_set(err, ERR_NOMEM, "out of memory");
                break;
            }
            int trc = 0;
            Err terr = {0};
#pragma omp parallel for num_threads(nth) schedule(dynamic, 1)
            for (size_t t = 0; t < ntask; t++) {
                TokEncoder *e = enc[omp_get_thread_num()];
                IdBuf *ob = &task_out[t];
                ob->n = 0;
                for (size_t u = t * UNITS_PER_TASK; u < nu && u < (t + 1) * UNITS_PER_TASK; u++) {
                    size_t before = ob->n;
                    Err e2 = {0};
                    int r = encode_unit(e, o->format, field, buf + units[u].start, units[u].len, units[u].line, path, ob, &e2);
                    ucount[u] = ob->n - before;
                    if (r) {
#pragma omp critical
                        if (!trc) {
                            trc = r;
                            terr = e2;
                        }
                        break;
                    }
                }
            }
            if (trc) {
                free(ucount);
                rc = trc;
                if (err) *err = terr;
                break;
            }
            for (size_t t = 0; t < ntask && !rc; t++) {
                size_t off = 0;
                for (size_t u = t * UNITS_PER_TASK; u < nu && u < (t + 1) * UNITS_PER_TASK && !rc; u++) {
                    int s = units[u].val;
                    rc = shard_writer_put(w[s], task_out[t].ids + off, ucount[u], err);
                    off += ucount[u];
                    st->tokens[s] += ucount[u];
                    if (ucount[u]) last_split = s;
                    if (!rc && units[u].doc_end && ucount[u]) {
                        rc = shard_writer_put(w[s], &eot, 1, err);
                        st->tokens[s]++;
                        st->docs[s]++;
                    }
                }
            }
            free(ucount);
            memmove(buf, buf + used, have - used);
            have -= used;
            st->bytes += used;
            done += used;
            if (o->progress) o->progress(o->progress_ctx, done, total);
            if (eof && have == 0) break;
            if (eof && used == 0) break; /* nothing more can be cut */
        }
        fclose(fp);
        if (!rc && o->format == DATA_FORMAT_TEXT && last_split >= 0) { /* end of the file's document */
            rc = shard_writer_put(w[last_split], &eot, 1, err);
            st->tokens[last_split]++;
            st->docs[last_split]++;
        }
    }
    for (int i = 0; i < nth && enc; i++) {
        if (enc[i]) st->invalid_utf8 += tok_encoder_invalid_bytes(enc[i]);
        tok_encoder_free(enc[i]);
    }
    free(enc);
    free(buf);
    free(units);
    for (size_t t = 0; t < ntask_cap; t++) free(task_out[t].ids);
    free(task_out);
    for (int s = 0; s < 2; s++) {
        if (!w[s]) continue;
        if (rc) shard_writer_abort(w[s]);
        else rc = shard_writer_close(w[s], &st->shards[s], err);
    }
    if (!rc && st->docs[0] + st->docs[1] == 0)
        rc = err_set(err, ERR_INVALID, "the inputs hold no documents (empty files or blank lines only)");
    if (!rc) rc = write_meta(partial, o, st, err);
    if (!rc) {
        if (rename(partial, o->out_dir) != 0)
            rc = err_set(err, ERR_IO, "cannot rename %s to %s: %s", partial, o->out_dir, strerror(errno));
        else
            fsync_dir(".");
    }
    if (rc) rm_rf(partial);
    return rc;
}

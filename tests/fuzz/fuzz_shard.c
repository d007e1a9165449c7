/* libFuzzer target: the token shard reader and the loader over a shard
 * directory. One input is a train shard and (after a FUZZ_SEP line,
 * optional) a val shard; each is mapped and verified (shard_map: magic,
 * sizes, CRCs, token ids), then the directory is opened as training data
 * and a few batches are drawn from both splits. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FuzzPart part[2];
    int k = fuzz_split(data, size, part, 2);
    char dir[512], tr[512], va[512];
    snprintf(dir, sizeof dir, "%s/shards", fuzz_dir());
    mkdir(dir, 0755);
    fuzz_put_file("shards/train_000000.bin", part[0].p, part[0].n, tr);
    snprintf(va, sizeof va, "%s/val_000000.bin", dir);
    unlink(va);
    if (k > 1) fuzz_put_file("shards/val_000000.bin", part[1].p, part[1].n, va);
    Err e = {0};
    ShardView s;
    if (shard_map(tr, 0, &s, &e) == 0) shard_unmap(&s);
    DataLoader *dl = NULL;
    if (loader_open(&dl, dir, 512, 0.1, 7, &e) == 0) {
        int32_t in[2 * 8], tg[2 * 8];
        for (int split = 0; split < 2; split++)
            for (uint64_t step = 0; step < 3; step++) (void)loader_batch(dl, split, step, 0, 2, 8, in, tg, &e);
        (void)loader_tokens(dl, SPLIT_VAL);
        (void)loader_vocab(dl);
        loader_close(dl);
    }
    return 0;
}

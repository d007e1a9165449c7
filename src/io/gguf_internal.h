/* Private to io/: the reader's parsed form, shared by the reader, the info
 * printer and the writer's key copy. */
#ifndef JARIP_IO_GGUF_INTERNAL_H
#define JARIP_IO_GGUF_INTERNAL_H

#include "io/gguf.h"

typedef struct {
    GGUFStr key;
    int type;                /* enum GGUFValueType */
    const uint8_t *val;      /* value bytes in the mapping (after the type field) */
    uint64_t val_len;        /* bytes of the serialized value */
    /* arrays only */
    int elem_type;
    uint64_t n;
    const uint8_t *arr;      /* first element */
    uint64_t *str_off;       /* string arrays: offset of element i from arr */
} GGUFKV;

struct GGUFFile {
    const uint8_t *base;
    size_t size;
    int mapped;              /* munmap on close */
    uint32_t version;
    uint64_t alignment;
    size_t data_off;
    int64_t n_kv;
    GGUFKV *kv;
    int64_t n_tensors;
    GGUFTensorInfo *tensors;
    void *data_copy;         /* gguf_load_tensor_data: the data section in anonymous memory */
};

/* Size in bytes of one fixed-size value type; 0 for string/array/unknown. */
size_t gguf_type_size(int type);
const char *gguf_type_name(int type);

#endif

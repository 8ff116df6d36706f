/* The block table of a bitshuffle-LZ4 chunk (framing: bslz4.py), followed the way bitshuffle's
 * decoder follows it. Shared by codecs/_blockwalk.c and the stream v1 lane (_v1lane.c). */
#ifndef TANGO_RECEIVER_BSLZ4_TABLE_H
#define TANGO_RECEIVER_BSLZ4_TABLE_H

#include <stddef.h>
#include <stdint.h>

/* Each length is read at the address the one before gives, so in a chunk not yet in cache (one
 * just received) every block costs a full memory latency, one after the other: the 2,184 blocks
 * of a sparse 4M frame took 150 us. Lines are asked for ahead of the walk, so that the memory
 * system fetches many at once (45 us). Where blocks are small (a sparse frame's few hundred
 * bytes) the walk reads most lines anyway: every line is asked for. Where they are large (dense
 * data, 8 kB) it reads one line in a hundred, and asking for all made it 5 times slower: then
 * only the line where the length 8 blocks on should be, at the mean block size so far.
 * Measured by benchmarks/scripts/block_walk_cold.py: benchmarks/LOG.md (2026-12-06). */
#define BSLZ4_FETCH_AHEAD 16384  /* bytes asked for ahead of the walk where blocks are small */
#define BSLZ4_SMALL_BLOCK 1024   /* mean block size (bytes) under which blocks are small */
#define BSLZ4_BLOCKS_AHEAD 8     /* where blocks are large, how many blocks ahead */
#define BSLZ4_LINE 64

static inline void bslz4_fetch_ahead(const unsigned char *chunk, size_t size, size_t at,
                                     long long walked, size_t *fetched) {
#if defined(__GNUC__)
    size_t passed = at - 12;  /* the blocks walked so far, lengths included */
    if (walked == 0 || passed < (size_t)walked * BSLZ4_SMALL_BLOCK) {
        size_t end = at + BSLZ4_FETCH_AHEAD < size ? at + BSLZ4_FETCH_AHEAD : size;
        for (; *fetched < end; *fetched += BSLZ4_LINE)
            __builtin_prefetch(chunk + *fetched);
    } else {
        size_t ahead = at + BSLZ4_BLOCKS_AHEAD * (passed / (size_t)walked);
        if (ahead < size)
            __builtin_prefetch(chunk + ahead);
    }
#else
    (void)chunk, (void)size, (void)at, (void)walked, (void)fetched;
#endif
}

/* Follows ``n_blocks`` big-endian block lengths from byte 12 (after the chunk header). Returns 1
 * with the position after the last block in ``*pos``, or 0 with the position of the first length
 * that lies past the end of the chunk. Lengths are never negative: one check per block. */
static inline int bslz4_walk(const unsigned char *chunk, size_t size, long long n_blocks,
                             size_t *pos) {
    size_t at = 12, fetched = 0;
    for (long long b = 0; b < n_blocks; b++) {
        if (at + 4 > size) {
            *pos = at;
            return 0;
        }
        bslz4_fetch_ahead(chunk, size, at, b, &fetched);
        uint32_t n = ((uint32_t)chunk[at] << 24) | ((uint32_t)chunk[at + 1] << 16) |
                     ((uint32_t)chunk[at + 2] << 8) | chunk[at + 3];
        at += 4 + (size_t)n;
    }
    *pos = at;
    return 1;
}

#endif

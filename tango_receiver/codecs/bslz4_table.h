/* The block table of a bitshuffle-LZ4 chunk (framing: bslz4.py), followed the way bitshuffle's
 * decoder follows it. Shared by codecs/_blockwalk.c and the stream v1 lane (_v1lane.c). */
#ifndef TANGO_RECEIVER_BSLZ4_TABLE_H
#define TANGO_RECEIVER_BSLZ4_TABLE_H

#include <stddef.h>
#include <stdint.h>

/* Follows ``n_blocks`` big-endian block lengths from byte 12 (after the chunk header). Returns 1
 * with the position after the last block in ``*pos``, or 0 with the position of the first length
 * that lies past the end of the chunk. Lengths are never negative: one check per block. */
/* Each length is read at the address the one before gives, so in a chunk not yet in cache (one
 * just received) every block costs a full memory latency, one after the other: 2,000 blocks of a
 * 4M frame took 100 us or more. The chunk's lines are asked for this far ahead of the walk, so
 * the memory system fetches many at once; the lines are then in cache for the write as well. */
#define BSLZ4_FETCH_AHEAD 16384
#define BSLZ4_LINE 64

static inline int bslz4_walk(const unsigned char *chunk, size_t size, long long n_blocks,
                             size_t *pos) {
    size_t at = 12, fetched = 0;
    for (long long b = 0; b < n_blocks; b++) {
        if (at + 4 > size) {
            *pos = at;
            return 0;
        }
#if defined(__GNUC__)
        for (; fetched < size && fetched < at + BSLZ4_FETCH_AHEAD; fetched += BSLZ4_LINE)
            __builtin_prefetch(chunk + fetched);
#endif
        uint32_t n = ((uint32_t)chunk[at] << 24) | ((uint32_t)chunk[at + 1] << 16) |
                     ((uint32_t)chunk[at + 2] << 8) | chunk[at + 3];
        at += 4 + (size_t)n;
    }
    *pos = at;
    return 1;
}

#endif

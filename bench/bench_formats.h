// bench_formats.h: `moeq bench formats` (bench_formats.c: moeq's quantizers of llama.cpp's block types
// against llama.cpp's own, loaded at run time).
#ifndef MOEQ_BENCH_FORMATS_H
#define MOEQ_BENCH_FORMATS_H

// argv[1..] are the options (argv[0] is ignored); JSON on stdout, progress and messages on stderr.
// Returns 0 on success, 1 when the peer library or a quantizer failed, 2 for bad options.
int moeq_bench_formats_main(int argc, char **argv);

#endif

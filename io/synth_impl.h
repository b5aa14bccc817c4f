// synth_impl.h: internal to io/synth.c and io/synth_config.c (not a public header: include synth.h).
// What both halves of `moeq synth` share: the hint separator of their error messages.
#ifndef MOEQ_SYNTH_IMPL_H
#define MOEQ_SYNTH_IMPL_H

#define HINT "\n---> HINT: "

#endif

// Included first by the AVX-512 kernel files: GCC 12's AVX-512 headers trip
// -Wmaybe-uninitialized (and, for some inlined unpack/shuffle/convert
// intrinsics, -Wuninitialized) on their own _mm512_undefined_*() pass-through
// operands (GCC bug 105593, fixed in GCC 13). The pragmas hold for the rest
// of the including file only.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

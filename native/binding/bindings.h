// Each glue file registers its functions on the module's exports.
#pragma once

#include <napi.h>

namespace qkb {

void register_quantize(Napi::Env env, Napi::Object exports);
void register_gemm(Napi::Env env, Napi::Object exports);
void register_w8a8(Napi::Env env, Napi::Object exports);
void register_w4a8(Napi::Env env, Napi::Object exports);
void register_attention(Napi::Env env, Napi::Object exports);
void register_elementwise(Napi::Env env, Napi::Object exports);
void register_fs(Napi::Env env, Napi::Object exports);
void register_map(Napi::Env env, Napi::Object exports);
void register_linalg(Napi::Env env, Napi::Object exports);

}  // namespace qkb

{
  "variables": {
    "qk_common_cflags": [
      "-O3",
      "-fPIC",
      "-fno-math-errno",
      "-ffp-contract=off",
      "-Wall",
      "-Wextra",
      "-Wno-unused-parameter"
    ]
  },
  "target_defaults": {
    "cflags_cc": [
      "-std=c++17"
    ],
    "cflags_cc!": [
      "-fno-exceptions",
      "-fno-rtti",
      "-std=gnu++17",
      "-std=gnu++1y",
      "-std=gnu++20"
    ],
    "cflags!": [
      "-fno-exceptions"
    ],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
    }
  },
  "targets": [
    {
      "target_name": "quantkit",
      "sources": [
        "native/dispatch.cpp",
        "native/threadpool.cpp",
        "native/kernels/tables.cpp",
        "native/kernels/ref/quant_ref.cpp",
        "native/kernels/ref/gemm_ref.cpp",
        "native/kernels/ref/w8a8_ref.cpp",
        "native/kernels/ref/w4a8_ref.cpp",
        "native/kernels/ref/attn_ref.cpp",
        "native/kernels/ref/norm_ref.cpp",
        "native/kernels/ref/linalg_ref.cpp",
        "native/kernels/ref/i8x_ref.cpp",
        "native/ops/quantize_ops.cpp",
        "native/ops/gemm_ops.cpp",
        "native/ops/w8a8_ops.cpp",
        "native/ops/w4a8_ops.cpp",
        "native/ops/attention_ops.cpp",
        "native/ops/elementwise_ops.cpp",
        "native/ops/linalg_ops.cpp",
        "native/binding/addon.cpp",
        "native/binding/quantize_binding.cpp",
        "native/binding/gemm_binding.cpp",
        "native/binding/w8a8_binding.cpp",
        "native/binding/w4a8_binding.cpp",
        "native/binding/attention_binding.cpp",
        "native/binding/elementwise_binding.cpp",
        "native/binding/fs_binding.cpp",
        "native/binding/map_binding.cpp",
        "native/binding/linalg_binding.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags": [
        "<@(qk_common_cflags)"
      ],
      "conditions": [
        [
          "target_arch=='x64'",
          {
            "dependencies": [
              "qk_avx2",
              "qk_avx512",
              "qk_amx"
            ]
          }
        ],
        [
          "target_arch=='arm64'",
          {
            "dependencies": [
              "qk_neon"
            ]
          }
        ]
      ]
    }
  ],
  "conditions": [
    [
      "target_arch=='x64'",
      {
        "targets": [
          {
            "target_name": "qk_avx2",
            "type": "static_library",
            "sources": [
              "native/kernels/x86/quant_avx2.cpp",
              "native/kernels/x86/gemm_avx2.cpp",
              "native/kernels/x86/w8a8_avx2.cpp",
              "native/kernels/x86/w4a8_avx2.cpp",
              "native/kernels/x86/w4a8_avx2_rows.cpp",
              "native/kernels/x86/attn_avx2.cpp",
              "native/kernels/x86/norm_avx2.cpp",
              "native/kernels/x86/linalg_avx2.cpp"
            ],
            "cflags": [
              "<@(qk_common_cflags)",
              "-mavx2",
              "-mfma",
              "-mf16c"
            ],
            "xcode_settings": {
              "OTHER_CFLAGS": [
                "-mavx2",
                "-mfma",
                "-mf16c"
              ]
            }
          },
          {
            "target_name": "qk_avx512",
            "type": "static_library",
            "sources": [
              "native/kernels/x86/quant_avx512.cpp",
              "native/kernels/x86/gemm_avx512.cpp",
              "native/kernels/x86/w8a8_avx512.cpp",
              "native/kernels/x86/w8a8_avx512_packed.cpp",
              "native/kernels/x86/w4a8_avx512.cpp",
              "native/kernels/x86/w4a8_avx512_rows.cpp",
              "native/kernels/x86/attn_avx512.cpp",
              "native/kernels/x86/norm_avx512.cpp",
              "native/kernels/x86/linalg_avx512.cpp"
            ],
            "cflags": [
              "<@(qk_common_cflags)",
              "-mavx2",
              "-mfma",
              "-mf16c",
              "-mavx512f",
              "-mavx512bw",
              "-mavx512vl",
              "-mavx512vnni"
            ],
            "xcode_settings": {
              "OTHER_CFLAGS": [
                "-mavx2",
                "-mfma",
                "-mf16c",
                "-mavx512f",
                "-mavx512bw",
                "-mavx512vl",
                "-mavx512vnni"
              ]
            }
          },
          {
            "target_name": "qk_amx",
            "type": "static_library",
            "sources": [
              "native/kernels/x86/w8a8_amx.cpp",
              "native/kernels/x86/w4a8_amx.cpp",
              "native/kernels/x86/gemm_amx_bf16.cpp",
              "native/kernels/x86/gemm_amx_i8x.cpp"
            ],
            "cflags": [
              "<@(qk_common_cflags)",
              "-mavx2",
              "-mfma",
              "-mf16c",
              "-mavx512f",
              "-mavx512bw",
              "-mavx512vl",
              "-mavx512vnni",
              "-mavx512bf16",
              "-mamx-tile",
              "-mamx-int8",
              "-mamx-bf16"
            ],
            "xcode_settings": {
              "OTHER_CFLAGS": [
                "-mavx2",
                "-mfma",
                "-mf16c",
                "-mavx512f",
                "-mavx512bw",
                "-mavx512vl",
                "-mavx512vnni",
                "-mavx512bf16",
                "-mamx-tile",
                "-mamx-int8",
                "-mamx-bf16"
              ]
            }
          }
        ]
      }
    ],
    [
      "target_arch=='arm64'",
      {
        "targets": [
          {
            "target_name": "qk_neon",
            "type": "static_library",
            "sources": [
              "native/kernels/arm/quant_neon.cpp",
              "native/kernels/arm/gemm_neon.cpp",
              "native/kernels/arm/w8a8_neon.cpp",
              "native/kernels/arm/w4a8_neon.cpp",
              "native/kernels/arm/attn_neon.cpp",
              "native/kernels/arm/linalg_neon.cpp"
            ],
            "cflags": [
              "<@(qk_common_cflags)"
            ]
          }
        ]
      }
    ]
  ]
}

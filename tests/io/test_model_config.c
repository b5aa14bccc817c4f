// test_model_config.c: config.json -> geometry for every supported architecture (real files where we have
// them: mixtral-tiny, Mixtral-8x7B, DeepSeek-R1; the Kimi-K2 preset; HF-shaped configs for the others), and
// the errors.
#include "test_util.h"

#include <stdio.h>
#include <string.h>

#include "moeq_io.h"

static void load_real(const char *dir, moeq_model_config *cfg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_status(moeq_config_load(path, cfg), MOEQ_OK, NULL);
}

static void test_mixtral_tiny(void **state) {
    (void)state;
    moeq_model_config c;
    load_real(moeq_test_tiny_model_dir(), &c);
    assert_int_equal(c.arch, MOEQ_ARCH_MIXTRAL);
    assert_int_equal(c.n_layers, 4);
    assert_int_equal(c.n_experts, 8);
    assert_int_equal(c.top_k, 2);
    assert_int_equal(c.hidden, 128);
    assert_int_equal(c.head_dim, 32);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.moe_intermediate, 384);
    assert_int_equal(c.vocab, 65);
    assert_int_equal(c.weight_dtype, MOEQ_DTYPE_BF16);
    assert_true(c.norm_topk_prob);
    for (int l = 0; l < 4; l++) assert_true(moeq_config_layer_is_moe(&c, l));
}

static void test_mixtral_8x7b(void **state) {
    (void)state;
    moeq_model_config c;
    load_real(moeq_test_real_metadata_dir("mixtral-8x7b"), &c);
    assert_int_equal(c.n_layers, 32);
    assert_int_equal(c.hidden, 4096);
    assert_int_equal(c.moe_intermediate, 14336);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.vocab, 32000);
}

static void test_deepseek_r1(void **state) {
    (void)state;
    moeq_model_config c;
    load_real(moeq_test_real_metadata_dir("deepseek-r1"), &c);
    assert_int_equal(c.arch, MOEQ_ARCH_DEEPSEEK_V3);
    assert_int_equal(c.n_layers, 61);
    assert_int_equal(c.n_mtp_layers, 1);
    assert_int_equal(moeq_config_n_layers_total(&c), 62);
    assert_int_equal(c.n_experts, 256);
    assert_int_equal(c.n_shared_experts, 1);
    assert_int_equal(c.top_k, 8);
    assert_int_equal(c.moe_intermediate, 2048);
    assert_int_equal(c.dense_intermediate, 18432);
    assert_int_equal(c.first_k_dense, 3);
    assert_int_equal(c.q_lora_rank, 1536);
    assert_int_equal(c.kv_lora_rank, 512);
    assert_int_equal(c.weight_dtype, MOEQ_DTYPE_F8_E4M3);
    assert_int_equal(c.torch_dtype, MOEQ_DTYPE_BF16);
    assert_int_equal(c.fp8_block[0], 128);
    assert_true(c.has_router_bias);
    assert_string_equal(c.scoring_func, "sigmoid");
    assert_false(moeq_config_layer_is_moe(&c, 2));
    assert_true(moeq_config_layer_is_moe(&c, 3));
    assert_true(moeq_config_layer_is_moe(&c, 61)); // the MTP layer has experts
}

// model_type kimi_k2 is the DeepSeek-V3 family: the full preset config.json of `moeq synth --preset kimi-k2`.
static void test_kimi_k2(void **state) {
    (void)state;
    moeq_model_config c;
    load_real(MOEQ_SOURCE_DIR "/configs/presets/kimi-k2", &c);
    assert_int_equal(c.arch, MOEQ_ARCH_DEEPSEEK_V3);
    assert_string_equal(c.model_type, "kimi_k2");
    assert_string_equal(c.architecture, "DeepseekV3ForCausalLM");
    assert_int_equal(c.n_layers, 61);
    assert_int_equal(c.n_mtp_layers, 0);
    assert_int_equal(c.first_k_dense, 1);
    assert_int_equal(c.n_experts, 384);
    assert_int_equal(c.n_shared_experts, 1);
    assert_int_equal(c.top_k, 8);
    assert_int_equal(c.hidden, 7168);
    assert_int_equal(c.moe_intermediate, 2048);
    assert_int_equal(c.dense_intermediate, 18432);
    assert_int_equal(c.n_heads, 64);
    assert_int_equal(c.q_lora_rank, 1536);
    assert_int_equal(c.kv_lora_rank, 512);
    assert_int_equal(c.qk_nope_head_dim, 128);
    assert_int_equal(c.qk_rope_head_dim, 64);
    assert_int_equal(c.v_head_dim, 128);
    assert_int_equal(c.vocab, 163840);
    assert_int_equal(c.n_group, 1);
    assert_int_equal(c.topk_group, 1);
    assert_true(c.routed_scaling_factor > 2.8269 && c.routed_scaling_factor < 2.8271);
    assert_int_equal(c.weight_dtype, MOEQ_DTYPE_F8_E4M3);
    assert_int_equal(c.fp8_block[0], 128);
    assert_true(c.has_router_bias);
    assert_false(moeq_config_layer_is_moe(&c, 0));
    assert_true(moeq_config_layer_is_moe(&c, 1));
    assert_true(moeq_config_layer_is_moe(&c, 60));
    assert_false(moeq_config_layer_is_moe(&c, 61)); // no MTP layer
}

static void test_other_archs(void **state) {
    (void)state;
    moeq_model_config c;
    const char *qwen2 =
        "{\"model_type\":\"qwen2_moe\",\"architectures\":[\"Qwen2MoeForCausalLM\"],\"hidden_size\":2048,"
        "\"num_hidden_layers\":24,\"num_attention_heads\":16,\"num_key_value_heads\":16,"
        "\"vocab_size\":151936,\"num_experts\":60,\"num_experts_per_tok\":4,\"moe_intermediate_size\":1408,"
        "\"shared_expert_intermediate_size\":5632,\"intermediate_size\":5632,\"decoder_sparse_step\":1,"
        "\"mlp_only_layers\":[0],\"norm_topk_prob\":false,\"torch_dtype\":\"bfloat16\"}";
    assert_status(moeq_config_parse("qwen2.json", qwen2, &c), MOEQ_OK, NULL);
    assert_int_equal(c.arch, MOEQ_ARCH_QWEN2_MOE);
    assert_int_equal(c.n_shared_experts, 1);
    assert_int_equal(c.shared_intermediate, 5632);
    assert_true(c.attention_bias);
    assert_false(moeq_config_layer_is_moe(&c, 0));
    assert_true(moeq_config_layer_is_moe(&c, 1));
    const char *qwen3 =
        "{\"model_type\":\"qwen3_moe\",\"hidden_size\":4096,\"num_hidden_layers\":94,"
        "\"num_attention_heads\":64,\"num_key_value_heads\":4,\"head_dim\":128,\"vocab_size\":151936,"
        "\"num_experts\":128,\"num_experts_per_tok\":8,\"moe_intermediate_size\":1536,"
        "\"intermediate_size\":12288,\"norm_topk_prob\":true,\"mlp_only_layers\":[]}";
    assert_status(moeq_config_parse("qwen3.json", qwen3, &c), MOEQ_OK, NULL);
    assert_int_equal(c.arch, MOEQ_ARCH_QWEN3_MOE);
    assert_int_equal(c.head_dim, 128);
    assert_true(c.qk_norm);
    assert_int_equal(c.n_shared_experts, 0);
    const char *kimi =
        "{\"model_type\":\"kimi_k2\",\"architectures\":[\"DeepseekV3ForCausalLM\"],\"hidden_size\":7168,"
        "\"num_hidden_layers\":61,\"num_attention_heads\":64,\"num_key_value_heads\":64,\"vocab_size\":"
        "163840,"
        "\"n_routed_experts\":384,\"n_shared_experts\":1,\"num_experts_per_tok\":8,"
        "\"moe_intermediate_size\":2048,\"intermediate_size\":18432,\"first_k_dense_replace\":1,"
        "\"q_lora_rank\":1536,\"kv_lora_rank\":512,\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,"
        "\"v_head_dim\":128,\"topk_method\":\"noaux_tc\",\"n_group\":1,\"topk_group\":1,"
        "\"routed_scaling_factor\":2.827,\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\","
        "\"weight_block_size\":[128,128],\"activation_scheme\":\"dynamic\"}}";
    assert_status(moeq_config_parse("kimi.json", kimi, &c), MOEQ_OK, NULL);
    assert_int_equal(c.arch, MOEQ_ARCH_DEEPSEEK_V3);
    assert_string_equal(c.model_type, "kimi_k2");
    assert_int_equal(c.n_experts, 384);
    assert_int_equal(c.weight_dtype, MOEQ_DTYPE_F8_E4M3);
    const char *olmoe =
        "{\"model_type\":\"olmoe\",\"hidden_size\":2048,\"num_hidden_layers\":16,"
        "\"num_attention_heads\":16,\"vocab_size\":50304,\"num_experts\":64,\"num_experts_per_tok\":8,"
        "\"intermediate_size\":1024}";
    assert_status(moeq_config_parse("olmoe.json", olmoe, &c), MOEQ_OK, NULL);
    assert_int_equal(c.arch, MOEQ_ARCH_OLMOE);
    assert_int_equal(c.moe_intermediate, 1024);
    const char *v2 =
        "{\"architectures\":[\"DeepseekV2ForCausalLM\"],\"hidden_size\":2048,\"num_hidden_layers\":27,"
        "\"num_attention_heads\":16,\"vocab_size\":102400,\"n_routed_experts\":64,\"n_shared_experts\":2,"
        "\"num_experts_per_tok\":6,\"moe_intermediate_size\":1408,\"intermediate_size\":10944,"
        "\"first_k_dense_replace\":1,\"q_lora_rank\":null,\"kv_lora_rank\":512,\"qk_nope_head_dim\":128,"
        "\"qk_rope_head_dim\":64,\"v_head_dim\":128}";
    assert_status(moeq_config_parse("v2.json", v2, &c), MOEQ_OK, NULL);
    assert_int_equal(c.arch, MOEQ_ARCH_DEEPSEEK_V2);
    assert_int_equal(c.q_lora_rank, 0);
    assert_int_equal(c.shared_intermediate, 2 * 1408);
}

static void test_errors(void **state) {
    (void)state;
    moeq_model_config c;
    assert_status(moeq_config_parse(
                      "a.json", "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"]}", &c),
                  MOEQ_ERR_UNSUPPORTED, "supported model_type values: mixtral, qwen2_moe");
    assert_non_null(strstr(moeq_error_detail(), "\"llama\""));
    assert_status(moeq_config_parse("b.json", "{\"model_type\": \"mixtral\",", &c), MOEQ_ERR_FORMAT,
                  "b.json: not valid JSON");
    assert_status(moeq_config_parse("c.json", "{\"model_type\":\"mixtral\",\"hidden_size\":64}", &c),
                  MOEQ_ERR_FORMAT, "c.json: required key \"num_hidden_layers\" is missing");
    assert_status(
        moeq_config_parse("d.json",
                          "{\"model_type\":\"mixtral\",\"hidden_size\":\"big\",\"num_hidden_layers\":2}", &c),
        MOEQ_ERR_FORMAT, "\"hidden_size\" must be an integer");
    assert_status(moeq_config_parse("e.json",
                                    "{\"model_type\":\"mixtral\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                                    "\"vocab_size\":10,\"num_attention_heads\":4,\"num_local_experts\":2,"
                                    "\"num_experts_per_tok\":3,\"intermediate_size\":8}",
                                    &c),
                  MOEQ_ERR_FORMAT, "num_experts_per_tok 3 exceeds the 2 routed experts");
    assert_status(
        moeq_config_parse("f.json",
                          "{\"model_type\":\"mixtral\",\"hidden_size\":64,\"num_hidden_layers\":-2}", &c),
        MOEQ_ERR_FORMAT, "\"num_hidden_layers\" = -2 is outside");
    assert_status(moeq_config_parse("g.json",
                                    "{\"model_type\":\"mixtral\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                                    "\"vocab_size\":10,\"num_attention_heads\":4,\"num_local_experts\":2,"
                                    "\"intermediate_size\":8,\"torch_dtype\":\"int8\"}",
                                    &c),
                  MOEQ_ERR_UNSUPPORTED, "torch_dtype \"int8\"");
    assert_status(
        moeq_config_parse("h.json",
                          "{\"model_type\":\"mixtral\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                          "\"vocab_size\":10,\"num_attention_heads\":4,\"num_local_experts\":2,"
                          "\"intermediate_size\":8,\"quantization_config\":{\"quant_method\":\"gptq\"}}",
                          &c),
        MOEQ_ERR_UNSUPPORTED, "quant_method \"gptq\"");
    assert_status(moeq_config_load("/nonexistent/config.json", &c), MOEQ_ERR_NOT_FOUND,
                  "/nonexistent/config.json");
}

// The real-valued keys: zero, negative and absurd values are refused naming the file and the key (a zero
// rms_norm_eps or a non-positive rope_theta gives NaN in the forward pass); the edges inside the range pass.
static void test_numeric_ranges(void **state) {
    (void)state;
    static const struct {
        const char *key, *value;
        int ok;
    } cases[] = {
        {"rms_norm_eps", "0", 0},
        {"rms_norm_eps", "-1e-6", 0},
        {"rms_norm_eps", "0.0", 0},
        {"rms_norm_eps", "2", 0},
        {"rms_norm_eps", "1e-300", 0},
        {"rms_norm_eps", "1e-5", 1},
        {"rms_norm_eps", "1", 1},
        {"rope_theta", "0", 0},
        {"rope_theta", "-10000", 0},
        {"rope_theta", "1", 0},
        {"rope_theta", "1e300", 0},
        {"rope_theta", "1000000.0", 1},
        {"rope_theta", "500000", 1},
        {"routed_scaling_factor", "0", 0},
        {"routed_scaling_factor", "-2.5", 0},
        {"routed_scaling_factor", "1e9", 0},
        {"routed_scaling_factor", "2.5", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"model_type\":\"mixtral\",\"hidden_size\":64,\"num_hidden_layers\":2,\"vocab_size\":10,"
                 "\"num_attention_heads\":4,\"num_local_experts\":2,\"intermediate_size\":8,\"%s\":%s}",
                 cases[i].key, cases[i].value);
        moeq_model_config c;
        if (cases[i].ok) {
            assert_status(moeq_config_parse("cfg/config.json", text, &c), MOEQ_OK, NULL);
            continue;
        }
        char want[128];
        snprintf(want, sizeof want, "cfg/config.json: \"%s\" = ", cases[i].key);
        assert_status(moeq_config_parse("cfg/config.json", text, &c), MOEQ_ERR_FORMAT, want);
        assert_non_null(strstr(moeq_error_detail(), "is outside"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixtral_tiny),   cmocka_unit_test(test_mixtral_8x7b),
        cmocka_unit_test(test_deepseek_r1),    cmocka_unit_test(test_other_archs),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_kimi_k2),
        cmocka_unit_test(test_numeric_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

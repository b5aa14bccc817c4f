// test_gguf_lora.c: which GGUF tensors moeq's LoRA adapter may hold (io/export_gguf_lora.c,
// moeq_gguf_lora_refusal): the 2-D tensors llama.cpp multiplies through its LoRA hook (build_lora_mm:
// attention of llama/qwen/olmoe, deepseek2's output projection, shared experts, dense MLPs, routers, the
// output head outside deepseek2) are accepted; routed experts (stack slots), the token embedding and the
// tensors llama.cpp's deepseek2 multiplies with plain ggml_mul_mat (MLA projections, its output head) are
// refused with a reason. The end-to-end adapter (contents, llama.cpp applying it) is
// tests/pipeline/test_gguf_lora.sh.
#include "test_util.h"

#include <string.h>

#include "export_gguf_lora.h"

static void test_accepted(void **state) {
    (void)state;
    static const char *const llama[] = {"blk.0.attn_q.weight", "blk.3.attn_k.weight",
                                        "blk.1.attn_v.weight", "blk.2.attn_output.weight",
                                        "output.weight",       "blk.0.ffn_gate_inp.weight"};
    for (size_t i = 0; i < sizeof llama / sizeof *llama; i++) {
        assert_null(moeq_gguf_lora_refusal("llama", llama[i], -1));
        assert_null(moeq_gguf_lora_refusal("qwen3moe", llama[i], -1));
    }
    static const char *const ds[] = {"blk.0.attn_output.weight", "blk.5.ffn_gate_shexp.weight",
                                     "blk.5.ffn_down_shexp.weight", "blk.0.ffn_up.weight",
                                     "blk.4.ffn_gate_inp.weight"};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++)
        assert_null(moeq_gguf_lora_refusal("deepseek2", ds[i], -1));
    assert_null(moeq_gguf_lora_refusal("qwen2moe", "blk.1.ffn_up_shexp.weight", -1));
}

static void test_refused(void **state) {
    (void)state;
    const char *why = moeq_gguf_lora_refusal("llama", "blk.0.ffn_down_exps.weight", 3);
    assert_non_null(why);
    assert_non_null(strstr(why, "routed expert"));
    why = moeq_gguf_lora_refusal("llama", "token_embd.weight", -1);
    assert_non_null(why);
    assert_non_null(strstr(why, "token embedding"));
    static const char *const ds[] = {"blk.0.attn_q_a.weight",  "blk.0.attn_q_b.weight",
                                     "blk.0.attn_q.weight",    "blk.0.attn_kv_a_mqa.weight",
                                     "blk.0.attn_kv_b.weight", "blk.0.attn_k_b.weight",
                                     "blk.0.attn_v_b.weight",  "output.weight"};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++) {
        why = moeq_gguf_lora_refusal("deepseek2", ds[i], -1);
        assert_non_null(why);
        assert_non_null(strstr(why, "without its LoRA hook"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_accepted), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* llama.cpp's side of the agreement checks (Benchmarks/agreement_generate.py), built against the
 * libllama of Benchmarks/peers/build_llama_cpp.sh:
 *   llama_agreement top1 MODEL TEXT_FILE CTX   argmax of the logits at every position that
 *       llama-perplexity scores (windows of CTX tokens, BOS first when the model adds one, the
 *       second half of each window), one id per line
 *   llama_agreement greedy MODEL PROMPT N      N greedy tokens after PROMPT (tokenized with
 *       special tokens parsed, as `condense generate` does), one id per line
 * Two threads, as the benchmarks run. */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[best]) best = i;
    return best;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "%s: read failed\n", path); exit(1); }
    s[n] = 0;
    fclose(f);
    return s;
}

static llama_token *tokenize(const struct llama_vocab *vocab, const char *text, int special, int *count) {
    int cap = (int)strlen(text) + 8;
    llama_token *t = malloc(sizeof *t * (size_t)cap);
    *count = llama_tokenize(vocab, text, (int32_t)strlen(text), t, cap, special, special);
    if (*count < 0) { fprintf(stderr, "tokenize failed\n"); exit(1); }
    return t;
}

int main(int argc, char **argv) {
    if (argc != 5 || (strcmp(argv[1], "top1") && strcmp(argv[1], "greedy"))) {
        fprintf(stderr, "usage: %s top1 MODEL TEXT_FILE CTX | greedy MODEL PROMPT N\n", argv[0]);
        return 2;
    }
    const int top1 = !strcmp(argv[1], "top1");
    const int num = atoi(argv[4]);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[2], mp);
    if (!model) return 1;
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int nv = llama_vocab_n_tokens(vocab);
    int n;
    llama_token *toks = top1 ? tokenize(vocab, read_file(argv[3]), 0, &n) : tokenize(vocab, argv[3], 1, &n);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(top1 ? num : n + num + 8);
    cp.n_batch = cp.n_ubatch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = 2;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return 1;
    struct llama_batch batch = llama_batch_init((int32_t)cp.n_ctx, 0, 1);
    if (top1) {
        for (int w = 0; w + 1 <= n / num; w++) {
            llama_memory_clear(llama_get_memory(ctx), true);
            batch.n_tokens = num;
            for (int j = 0; j < num; j++) {
                batch.token[j] = toks[w * num + j];
                batch.pos[j] = j;
                batch.n_seq_id[j] = 1;
                batch.seq_id[j][0] = 0;
                batch.logits[j] = 1;
            }
            if (llama_vocab_get_add_bos(vocab)) batch.token[0] = llama_vocab_bos(vocab);
            if (llama_decode(ctx, batch)) return 1;
            for (int j = num / 2; j < num - 1; j++) printf("%d\n", argmax(llama_get_logits_ith(ctx, j), nv));
        }
    } else {
        int pos = 0;
        batch.n_tokens = n;
        for (int j = 0; j < n; j++) {
            batch.token[j] = toks[j];
            batch.pos[j] = pos++;
            batch.n_seq_id[j] = 1;
            batch.seq_id[j][0] = 0;
            batch.logits[j] = j == n - 1;
        }
        for (int i = 0; i < num; i++) {
            if (llama_decode(ctx, batch)) return 1;
            const llama_token next = argmax(llama_get_logits_ith(ctx, -1), nv);
            printf("%d\n", next);
            batch.n_tokens = 1;
            batch.token[0] = next;
            batch.pos[0] = pos++;
            batch.logits[0] = 1;
        }
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

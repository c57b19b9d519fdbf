/*
** fuzz/replay.c -- main() for the replay build of a fuzzer: runs
** LLVMFuzzerTestOneInput over every file of the fuzzer's corpus directory
** (FUZZ_CORPUS, fixed at build time; or the directories and files given as
** arguments), so CI replays the committed corpora with the normal compiler
** (and under ASan and valgrind).  A finding aborts, as under libFuzzer;
** otherwise the last line is "N passed, 0 failed".
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int passed, failed;

static void run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf;
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
      fseek(f, 0, SEEK_SET) != 0) {
    printf("not ok - cannot read %s\n", path);
    failed++;
    if (f) fclose(f);
    return;
  }
  buf = malloc((size_t)n + 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    printf("not ok - cannot read %s\n", path);
    failed++;
  } else {
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    passed++;
  }
  free(buf);
  fclose(f);
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_path(const char *path) {
  struct stat st;
  DIR *d;
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0, i;
  if (stat(path, &st) != 0) {
    printf("not ok - %s does not exist\n", path);
    failed++;
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    run_file(path);
    return;
  }
  if ((d = opendir(path)) == NULL) return;
  while ((e = readdir(d)) != NULL) {
    char full[4096];
    if (e->d_name[0] == '.') continue;
    snprintf(full, sizeof full, "%s/%s", path, e->d_name);
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      names = realloc(names, cap * sizeof *names);
      if (names == NULL) abort();
    }
    names[n++] = strdup(full);
  }
  closedir(d);
  qsort(names, n, sizeof *names, by_name); /* the same order every run */
  for (i = 0; i < n; i++) {
    run_file(names[i]);
    free(names[i]);
  }
  free(names);
}

int main(int argc, char **argv) {
  int i;
  if (argc > 1)
    for (i = 1; i < argc; i++) run_path(argv[i]);
  else
    run_path(FUZZ_CORPUS);
  printf("ok - %d inputs of %s replayed\n", passed,
         argc > 1 ? "the given paths" : FUZZ_CORPUS);
  if (passed == 0) {
    printf("not ok - no corpus inputs\n");
    failed++;
  }
  printf("%d passed, %d failed\n", passed > 0 ? 1 : 0, failed);
  return failed == 0 ? 0 : 1;
}

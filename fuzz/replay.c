/*
** fuzz/replay.c -- runs a libFuzzer harness over corpus files without
** libFuzzer, with the ordinary compiler: the CI test of the fuzz corpus.
**
**   replay [DIR_OR_FILE...]
**
** Without arguments it replays the directories compiled in as
** SP_FUZZ_CORPUS (a "|"-separated list).  Every file is one check; a
** harness disagreement (sp_fuzz_fail) fails that file and the replay goes
** on.  The last line is "N passed, M failed" like the other C tests; an
** empty corpus, an unreadable file, or a harness built without its
** reference (SP_FUZZ_NO_REFERENCE) is a failure too.
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int passed, failed, file_failures;
static const char *current;

void sp_fuzz_fail(const char *what) {
  if (file_failures++ == 0) printf("not ok - %s: %s\n", current, what);
}

static void run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  long n = -1;
  if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0) {
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) n = -1;
  }
  if (f) fclose(f);
  if (!buf || n < 0) {
    printf("not ok - %s: cannot read\n", path);
    failed++;
    free(buf);
    return;
  }
  current = path;
  file_failures = 0;
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  if (file_failures)
    failed++;
  else
    passed++;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir (sorted, so output is stable). */
static void run_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    printf("not ok - %s: cannot open\n", dir);
    failed++;
    return;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **grown = realloc(names, cap * sizeof *names);
      if (!grown) abort();
      names = grown;
    }
    size_t len = strlen(dir) + strlen(e->d_name) + 2;
    names[n] = malloc(len);
    if (!names[n]) abort();
    snprintf(names[n], len, "%s/%s", dir, e->d_name);
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof *names, by_name);
  int before = passed + failed;
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) run_file(names[i]);
    free(names[i]);
  }
  free(names);
  if (passed + failed == before) {
    printf("not ok - %s: no corpus files\n", dir);
    failed++;
  } else {
    printf("# %s: %d files\n", dir, passed + failed - before);
  }
}

static void run_path(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    run_dir(path);
  else
    run_file(path);
}

int main(int argc, char **argv) {
#ifdef SP_FUZZ_NO_REFERENCE
  printf("not ok - built without the differential reference "
         "(install libhttp-parser-dev and reconfigure)\n");
  failed++;
#endif
  if (argc > 1) {
    for (int i = 1; i < argc; i++) run_path(argv[i]);
  } else {
#ifdef SP_FUZZ_CORPUS
    char *dirs = strdup(SP_FUZZ_CORPUS), *save = NULL;
    if (!dirs) abort();
    for (char *p = strtok_r(dirs, "|", &save); p;
         p = strtok_r(NULL, "|", &save))
      run_path(p);
    free(dirs);
#else
    printf("not ok - no corpus given\n");
    failed++;
#endif
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

/* Loaded with LD_PRELOAD, makes every library in the process see an AVX2-only x86 CPU (no AVX-512, VNNI,
 * bf16 or AMX), so that ONNX Runtime, PyTorch, oneDNN, numpy and OpenVINO pick the kernels they would on
 * such a host. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID; /proc/cpuinfo flag cpuid_fault) turns
 * each CPUID instruction into a SIGSEGV, answered here with the real result less those feature bits.
 * A program's own SIGSEGV handler (gcc's, Python's faulthandler) is kept aside and gets every other fault.
 * glibc's own start-up probes run before this library and keep their AVX-512 string functions. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))
/* CPUID leaf 7, sub-leaf 0: EBX avx512 f dq ifma pf er cd bw vl; ECX vbmi vbmi2 vnni bitalg vpopcntdq;
 * EDX 4vnniw 4fmaps vp2intersect amx-bf16 fp16 amx-tile amx-int8. Sub-leaf 1, EAX: avx-vnni, avx512-bf16. */
static const uint32_t LEAF7_EBX = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31);
static const uint32_t LEAF7_ECX = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14);
static const uint32_t LEAF7_EDX = BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25);
static const uint32_t LEAF7_1_EAX = BIT(4) | BIT(5);

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn real_sigaction;
static int answering;                /* SIGSEGV is this library's from its start on */
static struct sigaction programs;    /* the handler the program asked for, SIG_DFL until it asks */

static long cpuid_faulting(int off) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, off); }

static void pass_on(int sig, siginfo_t *info, void *context) {
    struct sigaction handler = programs;
    if (handler.sa_flags & SA_RESETHAND) programs.sa_handler = SIG_DFL;
    if (handler.sa_flags & SA_SIGINFO) {
        handler.sa_sigaction(sig, info, context);
    } else if (handler.sa_handler != SIG_DFL && handler.sa_handler != SIG_IGN) {
        handler.sa_handler(sig);
    } else {  /* the default: the faulting instruction runs again and ends the process */
        struct sigaction fallback;
        memset(&fallback, 0, sizeof fallback);
        fallback.sa_handler = SIG_DFL;
        real_sigaction(sig, &fallback, NULL);
    }
}

static void answer_cpuid(int sig, siginfo_t *info, void *context) {
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)reg[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {
        pass_on(sig, info, context);
        return;
    }
    uint32_t leaf = (uint32_t)reg[REG_RAX], sub = (uint32_t)reg[REG_RCX];
    uint32_t a = leaf, b, c = sub, d;
    cpuid_faulting(1);
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    cpuid_faulting(0);
    if (leaf == 7 && sub == 0) {
        b &= ~LEAF7_EBX;
        c &= ~LEAF7_ECX;
        d &= ~LEAF7_EDX;
    } else if (leaf == 7 && sub == 1) {
        a &= ~LEAF7_1_EAX;
    }
    reg[REG_RAX] = a;
    reg[REG_RBX] = b;
    reg[REG_RCX] = c;
    reg[REG_RDX] = d;
    reg[REG_RIP] += 2;
}

int sigaction(int sig, const struct sigaction *action, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || !answering) return real_sigaction(sig, action, old);
    if (old) *old = programs;
    if (action) programs = *action;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    struct sigaction action, old;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    return sigaction(sig, &action, &old) == 0 ? old.sa_handler : SIG_ERR;
}

__attribute__((constructor)) static void mask_cpuid(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    programs.sa_handler = SIG_DFL;
    action.sa_sigaction = answer_cpuid;
    action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigaction(SIGSEGV, &action, NULL);
    answering = 1;
    if (cpuid_faulting(0) != 0) {  /* threads and forks inherit it; exec runs this again */
        fputs("avx2_only: this CPU or kernel has no CPUID faulting; the instruction sets are not masked\n", stderr);
        _exit(70);
    }
}

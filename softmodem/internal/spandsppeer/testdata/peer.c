/*
 * peer.c: a test peer for isp-box's Go software modem, built on Debian's
 * spandsp (libspandsp-dev). It is compiled only by the Go tests; the
 * product never links it.
 *
 * It runs lock-step over stdin/stdout: for every block of 160 G.711 bytes
 * read it writes one block of 160 bytes, so a test drives both modems
 * faster than real time. Data to send comes from TXFILE; what it receives
 * goes to RXFILE when stdin ends. Events go to stderr, one per line:
 * "<sample> <event> [args]".
 *
 * usage:
 *   peer fsk   LAW TXSPEC RXSPEC TXFILE RXFILE START
 *   peer v22bis LAW call|answer RATE TXFILE RXFILE START
 *   peer ans-tx LAW
 *   peer ans-rx LAW
 *   peer g711
 * LAW is u or a; SPEC is v21ch1, v21ch2, bell103ch1, bell103ch2; START is
 * the time in ms before sending data (as a DTE that waits for CONNECT).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#define SPANDSP_EXPOSE_INTERNAL_STRUCTURES
#include <spandsp.h>

#define BLOCK 160

static long sample;
static int alaw;
static uint8_t *txbuf, *rxbuf;
static long txlen, txpos, rxlen, rxcap;
static int sending;
static long start_at;

static void load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    txlen = ftell(f);
    fseek(f, 0, SEEK_SET);
    txbuf = malloc(txlen + 1);
    if (fread(txbuf, 1, txlen, f) != (size_t) txlen) { perror("read"); exit(2); }
    fclose(f);
}

static void save(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) { perror(path); exit(2); }
    fwrite(rxbuf, 1, rxlen, f);
    fclose(f);
}

static int get_byte(void *user_data)
{
    if (!sending && sample >= start_at)
        sending = 1;
    if (!sending || txpos >= txlen)
        return SIG_STATUS_END_OF_DATA;
    return txbuf[txpos++];
}

static void put_byte(void *user_data, int byte)
{
    if (byte < 0) {
        fprintf(stderr, "%ld status %s\n", sample, signal_status_to_str(byte));
        return;
    }
    if (rxlen == rxcap) {
        rxcap = rxcap ? 2*rxcap : 65536;
        rxbuf = realloc(rxbuf, rxcap);
    }
    rxbuf[rxlen++] = byte;
}

/* 8N1 framing of the transmit data, idling at mark. spandsp 0.0.6's
 * async_tx has no idle state: a get_byte that has nothing to send would
 * have its status code sent as a character. */
static int tx_shift, tx_left;

static int get_bit_idle(void *user_data)
{
    if (tx_left == 0) {
        int b = get_byte(NULL);
        if (b < 0)
            return 1;
        tx_shift = (b << 1) | 0x200;
        tx_left = 10;
    }
    int bit = tx_shift & 1;
    tx_shift >>= 1;
    tx_left--;
    return bit;
}

static int read_block(int16_t *amp)
{
    uint8_t b[BLOCK];
    if (fread(b, 1, BLOCK, stdin) != BLOCK)
        return 0;
    for (int i = 0; i < BLOCK; i++)
        amp[i] = alaw ? alaw_to_linear(b[i]) : ulaw_to_linear(b[i]);
    return 1;
}

static void write_block(const int16_t *amp)
{
    uint8_t b[BLOCK];
    for (int i = 0; i < BLOCK; i++)
        b[i] = alaw ? linear_to_alaw(amp[i]) : linear_to_ulaw(amp[i]);
    fwrite(b, 1, BLOCK, stdout);
    fflush(stdout);
    sample += BLOCK;
}

static int spec(const char *name)
{
    if (!strcmp(name, "v21ch1")) return FSK_V21CH1;
    if (!strcmp(name, "v21ch2")) return FSK_V21CH2;
    if (!strcmp(name, "bell103ch1")) return FSK_BELL103CH1;
    if (!strcmp(name, "bell103ch2")) return FSK_BELL103CH2;
    fprintf(stderr, "unknown spec %s\n", name);
    exit(2);
}

static void tone_report(void *user_data, int code, int level, int delay)
{
    fprintf(stderr, "%ld tone %s level %d\n", sample, modem_connect_tone_to_str(code), level);
}

static void v22_status(void *user_data, int status)
{
    v22bis_state_t *s = user_data;
    fprintf(stderr, "%ld status %s rate %d\n", sample, signal_status_to_str(status),
            v22bis_get_current_bit_rate(s));
}

int main(int argc, char **argv)
{
    int16_t in[BLOCK], out[BLOCK];
    if (argc < 2) { fprintf(stderr, "usage: see peer.c\n"); return 2; }
    const char *mode = argv[1];
    if (!strcmp(mode, "g711")) {
        for (int i = 0; i < 256; i++)
            printf("%d %d %d\n", i, ulaw_to_linear(i), alaw_to_linear(i));
        for (int x = -32768; x <= 32767; x += 7)
            printf("%d %d %d\n", x, linear_to_ulaw(x), linear_to_alaw(x));
        return 0;
    }
    if (argc < 3) { fprintf(stderr, "usage: see peer.c\n"); return 2; }
    alaw = argv[2][0] == 'a';
    if (!strcmp(mode, "ans-tx")) {
        modem_connect_tones_tx_state_t *tx = modem_connect_tones_tx_init(NULL, MODEM_CONNECT_TONES_ANS_PR);
        while (read_block(in)) {
            int n = modem_connect_tones_tx(tx, out, BLOCK);
            for (int i = n; i < BLOCK; i++) out[i] = 0;
            write_block(out);
        }
        return 0;
    }
    if (!strcmp(mode, "ans-rx")) {
        modem_connect_tones_rx_state_t *rx = modem_connect_tones_rx_init(NULL, MODEM_CONNECT_TONES_ANS_PR, tone_report, NULL);
        modem_connect_tones_rx_state_t *rx2 = modem_connect_tones_rx_init(NULL, MODEM_CONNECT_TONES_ANS, tone_report, NULL);
        memset(out, 0, sizeof(out));
        while (read_block(in)) {
            modem_connect_tones_rx(rx, in, BLOCK);
            modem_connect_tones_rx(rx2, in, BLOCK);
            write_block(out);
        }
        return 0;
    }
    if (!strcmp(mode, "fsk")) {
        if (argc != 8) { fprintf(stderr, "usage: see peer.c\n"); return 2; }
        load(argv[5]);
        start_at = atol(argv[7])*8;
        async_rx_state_t arx;
        async_rx_init(&arx, 8, ASYNC_PARITY_NONE, 1, FALSE, put_byte, NULL);
        fsk_tx_state_t *tx = fsk_tx_init(NULL, &preset_fsk_specs[spec(argv[3])], get_bit_idle, NULL);
        fsk_rx_state_t *rx = fsk_rx_init(NULL, &preset_fsk_specs[spec(argv[4])], FSK_FRAME_MODE_ASYNC, async_rx_put_bit, &arx);
        while (read_block(in)) {
            fsk_rx(rx, in, BLOCK);
            fsk_tx(tx, out, BLOCK);
            write_block(out);
        }
        fprintf(stderr, "%ld done sent %ld received %ld\n", sample, txpos, rxlen);
        save(argv[6]);
        return 0;
    }
    if (!strcmp(mode, "v22bis")) {
        if (argc != 8) { fprintf(stderr, "usage: see peer.c\n"); return 2; }
        int calling = !strcmp(argv[3], "call");
        int rate = atoi(argv[4]);
        load(argv[5]);
        start_at = atol(argv[7])*8;
        async_rx_state_t arx;
        async_rx_init(&arx, 8, ASYNC_PARITY_NONE, 1, FALSE, put_byte, NULL);
        v22bis_state_t *v = v22bis_init(NULL, rate, 0, calling, get_bit_idle, NULL, async_rx_put_bit, &arx);
        v22bis_set_modem_status_handler(v, v22_status, v);
        while (read_block(in)) {
            v22bis_rx(v, in, BLOCK);
            int n = v22bis_tx(v, out, BLOCK);
            for (int i = n; i < BLOCK; i++) out[i] = 0;
            write_block(out);
        }
        fprintf(stderr, "%ld done sent %ld received %ld rate %d\n", sample, txpos, rxlen, v22bis_get_current_bit_rate(v));
        save(argv[6]);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}

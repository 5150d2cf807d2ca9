/*
 * v4probe: an IPv4-only client as legacy C code is written, for the lab's runtime truth table
 * (test/e2e TestRuntimeTruthTable). It resolves HOST the way MODE says, connects an AF_INET
 * socket to the first IPv4 address it got, sends an HTTP/1.0 GET and prints the status line.
 * Built against glibc (gcc) and musl (musl-gcc) by the test.
 *
 *   v4probe MODE HOST PORT
 *   MODE: gai-inet             getaddrinfo(AF_INET, flags 0)
 *         gai-inet-addrconfig  getaddrinfo(AF_INET, AI_ADDRCONFIG)
 *         gai-null             getaddrinfo(hints NULL: glibc uses AI_V4MAPPED|AI_ADDRCONFIG)
 *         gai-unspec           getaddrinfo(AF_UNSPEC, flags 0), IPv4 results only
 *         ghbn                 gethostbyname
 *
 * Exit 0 when the server answered, 1 when resolution or the connect failed (the reason on
 * stderr), 2 on bad usage.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int resolve(const char *mode, const char *host, struct sockaddr_in *out)
{
	if (strcmp(mode, "ghbn") == 0) {
		struct hostent *h = gethostbyname(host);
		if (h == NULL || h->h_addrtype != AF_INET || h->h_addr_list[0] == NULL) {
			fprintf(stderr, "gethostbyname: %s\n", hstrerror(h_errno));
			return -1;
		}
		memcpy(&out->sin_addr, h->h_addr_list[0], sizeof out->sin_addr);
		return 0;
	}
	struct addrinfo hints, *res = NULL, *ai;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	struct addrinfo *hp = &hints;
	if (strcmp(mode, "gai-inet") == 0) {
		hints.ai_family = AF_INET;
	} else if (strcmp(mode, "gai-inet-addrconfig") == 0) {
		hints.ai_family = AF_INET;
		hints.ai_flags = AI_ADDRCONFIG;
	} else if (strcmp(mode, "gai-unspec") == 0) {
		hints.ai_family = AF_UNSPEC;
	} else if (strcmp(mode, "gai-null") == 0) {
		hp = NULL;
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		exit(2);
	}
	int rc = getaddrinfo(host, NULL, hp, &res);
	if (rc != 0) {
		fprintf(stderr, "getaddrinfo: %s\n", gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			memcpy(out, ai->ai_addr, sizeof *out);
			freeaddrinfo(res);
			return 0;
		}
	}
	freeaddrinfo(res);
	fprintf(stderr, "getaddrinfo: no IPv4 address among the results\n");
	return -1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: v4probe MODE HOST PORT\n");
		return 2;
	}
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof sin);
	if (resolve(argv[1], argv[2], &sin) != 0)
		return 1;
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(argv[3]));
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof ip);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
		perror("connect");
		return 1;
	}
	char req[512];
	snprintf(req, sizeof req, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", argv[2]);
	if (write(fd, req, strlen(req)) < 0) {
		perror("write");
		return 1;
	}
	char buf[256];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n <= 0) {
		perror("read");
		return 1;
	}
	buf[n] = 0;
	char *eol = strpbrk(buf, "\r\n");
	if (eol)
		*eol = 0;
	printf("peer=%s:%s %s\n", ip, argv[3], buf);
	close(fd);
	return 0;
}

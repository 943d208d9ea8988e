// Command app is the small test application of the real local nodes: an HTTP
// server that answers /healthz and / with the version in $APP_VERSION.
//
//	app                 serve on :$PORT (8080 if unset)
//	app -exit CODE      exit at once with CODE (a container that crashes)
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	exitCode := flag.Int("exit", -1, "exit at once with this code instead of serving")
	flag.Parse()
	if *exitCode >= 0 {
		fmt.Fprintf(os.Stderr, "exiting with code %d as asked\n", *exitCode)
		os.Exit(*exitCode)
	}
	version := os.Getenv("APP_VERSION")
	if version == "" {
		version = "unknown"
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		hostname, _ := os.Hostname()
		fmt.Fprintf(w, "version=%s host=%s\n", version, hostname)
	})
	log.Printf("app %s listening on :%s", version, port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

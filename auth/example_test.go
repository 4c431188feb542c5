package auth_test

import (
	"fmt"
	"log"
	"time"

	"github.com/switchboard-rt/switchboard/auth"
)

func ExampleVerifier_Verify() {
	secret := []byte("a development secret of at least 32 bytes")
	v, err := auth.New(auth.Config{HMACSecret: secret})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()

	token, err := auth.Sign(secret, "HS256", auth.Claims{
		Subject:  "alice",
		Expires:  time.Now().Add(time.Hour),
		Channels: []string{"chat:*"},
	})
	if err != nil {
		log.Fatal(err)
	}

	claims, err := v.Verify(token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.Subject)
	fmt.Println(auth.Match(claims.Channels, "chat:lobby"), auth.Match(claims.Channels, "admin"))

	_, err = v.Verify(token + "x")
	fmt.Println(err)
	// Output:
	// alice
	// true false
	// auth: invalid signature: signature does not verify
}

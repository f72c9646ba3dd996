// Command tokvec-embed embeds a few docs (or a JSONL file of them) with a tokvec server and prints
// each doc's shape. It uses only the stubs that proto/buf.gen.go.yaml generates from proto/.
//
//	tokvec-embed [-server 127.0.0.1:50051] [-dtype float32|float16|bfloat16] [-stream] [-json] [docs.jsonl]
//
// -json prints one line per doc with its rows as base64 float32 little-endian bytes (what the
// test suite compares with the Python client's rows).
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	tokvecv1 "tokvec.dev/gen/go/tokvec/v1"
)

// jsonDoc is a line of docs.jsonl. Spaces may be left out: a space after every word, as in spaCy.
type jsonDoc struct {
	ID     string   `json:"id"`
	Words  []string `json:"words"`
	Spaces []bool   `json:"spaces"`
	Text   string   `json:"text"`
}

var exampleDocs = []*tokvecv1.Doc{
	{Id: "words", Words: []string{"Hello", "world", "!"}, Spaces: []bool{true, false, false}},
	{Id: "no-spaces-given", Words: []string{"Shared", "embeddings", "for", "every", "pipeline"}},
	{Id: "text", Text: "I can't go to New York."},
	{Id: "bad", Words: []string{"a", "b"}, Spaces: []bool{true}}, // fails alone, in-band
}

var dtypes = map[string]tokvecv1.DType{
	"float32": tokvecv1.DType_DTYPE_FLOAT32, "float16": tokvecv1.DType_DTYPE_FLOAT16, "bfloat16": tokvecv1.DType_DTYPE_BFLOAT16,
}

// result is one doc, its chunks joined: rows (n_tokens x width, row-major) or an error.
type result struct {
	Index uint64          `json:"index"`
	ID    string          `json:"id"`
	Error *tokvecv1.Error `json:"error,omitempty"`
	Shape []int           `json:"shape,omitempty"`
	Rows  []float32       `json:"-"`
	Words []string        `json:"words,omitempty"`
}

// halfToFloat decodes IEEE 754 binary16 bits.
func halfToFloat(bits uint16) float32 {
	sign := float32(1)
	if bits&0x8000 != 0 {
		sign = -1
	}
	exponent, fraction := int(bits>>10)&0x1f, float64(bits&0x3ff)
	switch exponent {
	case 0:
		return sign * float32(math.Ldexp(fraction, -24))
	case 0x1f:
		if fraction != 0 {
			return float32(math.NaN())
		}
		return sign * float32(math.Inf(1))
	}
	return sign * float32(math.Ldexp(1+fraction/1024, exponent-15))
}

// decode reads Tensor.data: row-major, little-endian, packed; copied out value by value, so the
// bytes' alignment in the received message does not matter.
func decode(t *tokvecv1.Tensor) ([]float32, error) {
	n := 1
	for _, d := range t.Shape {
		n *= int(d)
	}
	size := 2
	if t.Dtype == tokvecv1.DType_DTYPE_FLOAT32 || t.Dtype == tokvecv1.DType_DTYPE_UNSPECIFIED {
		size = 4
	}
	if len(t.Data) != n*size {
		return nil, fmt.Errorf("Tensor.data: %d bytes for shape %v in %s", len(t.Data), t.Shape, t.Dtype)
	}
	out := make([]float32, n)
	for i := range out {
		switch t.Dtype {
		case tokvecv1.DType_DTYPE_FLOAT16:
			out[i] = halfToFloat(binary.LittleEndian.Uint16(t.Data[2*i:]))
		case tokvecv1.DType_DTYPE_BFLOAT16: // the upper half of a float32's bits
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(t.Data[2*i:])) << 16)
		default:
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	}
	return out, nil
}

// assembler joins each doc's chunks: rows concatenate in arrival order, the rest is in the first.
type assembler struct{ chunks []*tokvecv1.DocResult }

func (a *assembler) add(chunk *tokvecv1.DocResult) (*result, error) {
	a.chunks = append(a.chunks, chunk)
	if chunk.More {
		return nil, nil
	}
	chunks := a.chunks
	a.chunks = nil
	first := chunks[0]
	r := &result{Index: first.Index, ID: first.Id, Error: first.Error, Words: first.Words}
	if first.Error != nil {
		return r, nil
	}
	width := 0
	for _, c := range chunks {
		if c.Tokens == nil {
			continue
		}
		rows, err := decode(c.Tokens)
		if err != nil {
			return nil, err
		}
		width = int(c.Tokens.Shape[1])
		r.Rows = append(r.Rows, rows...)
	}
	r.Shape = []int{int(first.NTokens), width}
	return r, nil
}

func readDocs(path string) ([]*tokvecv1.Doc, error) {
	if path == "" {
		return exampleDocs, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var docs []*tokvecv1.Doc
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for scanner.Scan() {
		if strings.TrimSpace(scanner.Text()) == "" {
			continue
		}
		var d jsonDoc
		if err := json.Unmarshal(scanner.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		docs = append(docs, &tokvecv1.Doc{Id: d.ID, Words: d.Words, Spaces: d.Spaces, Text: d.Text})
	}
	return docs, scanner.Err()
}

// embed sends every doc in one Embed call.
func embed(ctx context.Context, client tokvecv1.EmbedServiceClient, docs []*tokvecv1.Doc, options *tokvecv1.EmbedOptions, each func(*result) error) error {
	call, err := client.Embed(ctx, &tokvecv1.EmbedRequest{Docs: docs, Options: options})
	if err != nil {
		return err
	}
	var a assembler
	for {
		msg, err := call.Recv()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := emit(&a, msg.Result, each); err != nil {
			return err
		}
	}
}

// stream sends the docs over EmbedStream, 16 per message, each message with its options.
func stream(ctx context.Context, client tokvecv1.EmbedServiceClient, docs []*tokvecv1.Doc, options *tokvecv1.EmbedOptions, each func(*result) error) error {
	call, err := client.EmbedStream(ctx)
	if err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() { // send while receiving: the server stops reading past max_in_flight_per_stream
		for start := 0; start < len(docs); start += 16 {
			end := start + 16
			if end > len(docs) {
				end = len(docs)
			}
			if err := call.Send(&tokvecv1.EmbedStreamRequest{Options: options, Docs: docs[start:end]}); err != nil {
				sent <- err
				return
			}
		}
		sent <- call.CloseSend()
	}()
	var a assembler
	for {
		msg, err := call.Recv()
		if err == io.EOF {
			return <-sent
		} else if err != nil {
			return err
		}
		if err := emit(&a, msg.Result, each); err != nil {
			return err
		}
	}
}

func emit(a *assembler, chunk *tokvecv1.DocResult, each func(*result) error) error {
	r, err := a.add(chunk)
	if err != nil || r == nil {
		return err
	}
	return each(r)
}

func show(r *result, asJSON bool) error {
	if asJSON {
		line := map[string]interface{}{"index": r.Index, "id": r.ID}
		if r.Error != nil {
			line["error"] = map[string]interface{}{"code": r.Error.Code, "message": r.Error.Message}
		} else {
			raw := make([]byte, 4*len(r.Rows))
			for i, v := range r.Rows {
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
			}
			line["shape"], line["rows"] = r.Shape, base64.StdEncoding.EncodeToString(raw)
			if len(r.Words) > 0 {
				line["words"] = r.Words
			}
		}
		out, err := json.Marshal(line)
		if err == nil {
			fmt.Println(string(out))
		}
		return err
	}
	if r.Error != nil {
		fmt.Printf("%d %s: error %d: %s\n", r.Index, r.ID, r.Error.Code, r.Error.Message)
		return nil
	}
	fmt.Printf("%d %s: (%d, %d)\n", r.Index, r.ID, r.Shape[0], r.Shape[1])
	return nil
}

func run() error {
	server := flag.String("server", "127.0.0.1:50051", "HOST:PORT of the tokvec server")
	dtype := flag.String("dtype", "float32", "wire dtype: float32, float16 or bfloat16")
	useStream := flag.Bool("stream", false, "use the bidirectional EmbedStream")
	asJSON := flag.Bool("json", false, "print one JSON line per doc, rows included")
	flag.Parse()
	wire, ok := dtypes[*dtype]
	if !ok {
		return fmt.Errorf("-dtype: %s is not float32, float16 or bfloat16", *dtype)
	}
	docs, err := readDocs(flag.Arg(0))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// Plaintext, for a server on this machine; use grpc.WithTransportCredentials for TLS.
	conn, err := grpc.DialContext(ctx, *server, grpc.WithInsecure())
	if err != nil {
		return err
	}
	defer conn.Close()
	client := tokvecv1.NewEmbedServiceClient(conn)
	options := &tokvecv1.EmbedOptions{Dtype: wire}
	each := func(r *result) error { return show(r, *asJSON) }
	if *useStream {
		return stream(ctx, client, docs, options, each)
	}
	return embed(ctx, client, docs, options, each)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "tokvec-embed: %v\n", err)
		os.Exit(1)
	}
}

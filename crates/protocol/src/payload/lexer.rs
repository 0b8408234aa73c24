//! Tokenizer for the payload grammar (to be written).

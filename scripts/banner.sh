#!/usr/bin/env bash
printf '\n==== %s ====\n' "$*"
